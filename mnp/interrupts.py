"""Signals that arrive before a job's own handlers are in place.

``mnp launch`` and ``mnp node`` install :func:`catch_early` first thing, before the heavy imports and the option
parsing, so a Ctrl-C (or SIGTERM, SIGHUP) at that moment is recorded in :data:`pending` instead of raising
somewhere unpredictable; the coordinator's handler (:class:`mnp.coordinator.job.Interrupt`) takes it over and the
job ends as interrupted (exit 130, 128+N), with its record, like a signal at any later instant."""

from __future__ import annotations

import signal

__all__ = ["pending", "catch_early", "SIGNALS"]

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
pending: list[int] = []


def _record(signum: int, _frame: object) -> None:
    pending.append(signum)


def catch_early() -> None:
    for s in SIGNALS:
        signal.signal(s, _record)
