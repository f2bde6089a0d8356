"""PENDING: a job waits for its dependencies, read from the records database (so a dependency may be run by
another ``mnp launch`` in another shell). The decisions are :mod:`mnp.coordinator.schedule`'s; this module
resolves what the user named and polls.

At submission every dependency must name an existing job (else a usage error, exit 2): ``N_TO_N`` an array of the
same size, ``SEQUENTIAL`` only an array job itself. While waiting, a dependency whose coordinator died is reaped
(FAILED) like any orphan, so nothing waits for a job no process runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mnp.coordinator.alerts import Alerts
from mnp.coordinator.engine import Failure
from mnp.coordinator.schedule import gate
from mnp.coordinator.transit import EXIT_STUCK
from mnp.errors import UsageError
from mnp.records import Records
from mnp.spec.depends import Dependency, parse_dependency

__all__ = ["labelled", "resolve_dependencies", "wait_for", "POLL_S"]

POLL_S = 0.25


def labelled(spec_deps: list[str], option_deps: list[str]) -> list[tuple[str, str]]:
    """The job's ``depends_on`` and the ``--depends-on`` options, each with the name an error gives it."""
    return [*((f"depends_on[{i}]", t) for i, t in enumerate(spec_deps)), *(("--depends-on", t) for t in option_deps)]


def resolve_dependencies(records: Records, named: list[tuple[str, str]], array_size: int | None) -> list[Dependency]:
    """What the user named (``--depends-on`` and the job's ``depends_on``, see :func:`labelled`) -> dependencies by
    job id. Raises UsageError (exit 2), naming the field or option, for a job that does not exist or a kind that
    does not fit."""
    out: list[Dependency] = []
    for where, text in named:
        try:
            dep = parse_dependency(text)
        except ValueError as e:
            raise UsageError(f"{where} {text!r}: {e}") from None
        if dep.kind and array_size is None:
            raise UsageError(f"{where} {text!r}: {dep.kind} is for array jobs (give --array N)")
        if not dep.job:
            out.append(dep)
            continue
        try:
            job = records.get(dep.job)
        except UsageError as e:
            raise UsageError(f"{where} {text!r}: {str(e).split(': ', 1)[-1]}") from None
        if dep.kind == "N_TO_N":
            size = (job.info.get("array") or {}).get("size")
            if size is None:
                raise UsageError(f"{where} {text!r}: job {job.id} is not an array job (N_TO_N pairs children)")
            if size != array_size:
                raise UsageError(f"{where} {text!r}: array {job.id} has {size} children, this one "
                                 f"{array_size} (N_TO_N needs the same size)")
        out.append(Dependency(job.id, dep.kind))
    return out


def wait_for(records: Records, job_id: str, name: str, needs: list[str], alerts: Alerts,
             interrupted: Callable[[], int | None]) -> Failure | None:
    """Wait in PENDING until every job in ``needs`` SUCCEEDED (None), or one failed, the job got stuck with
    ``on_stuck: fail``, or a signal came (the :class:`Failure` to end the job with)."""
    import signal

    from mnp.coordinator.engine import EXIT_INTERRUPTED

    records.transition(job_id, "PENDING", "waiting for " + ", ".join(needs))
    last_reap = 0.0
    while True:
        signum = interrupted()
        if signum is not None:
            code = EXIT_INTERRUPTED if signum == signal.SIGINT else 128 + signum
            return Failure(code, f"interrupted by {signal.Signals(signum).name} while PENDING", retryable=False,
                           cancelled=True)
        now = time.monotonic()
        if now - last_reap > 1:
            records.reap_orphans()
            last_reap = now
        g = gate(needs, records.state_of)
        if g.failed is not None:
            return Failure(1, g.failed, retryable=False)
        if g.go:
            return None
        if alerts.watch.due(now):
            alert = alerts.raise_alert(records, job_id, name, "PENDING", g.waiting_for)
            if alerts.watch.on_stuck == "fail":
                return Failure(EXIT_STUCK, alert["line"], retryable=False)
        alerts.poll()
        time.sleep(POLL_S)
