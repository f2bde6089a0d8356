"""Stuck in transit, decided without I/O: a job that has not reached RUNNING ``transit_timeout`` seconds after it
was submitted gets one alert (AWS Batch's advice: alarm on jobs left in SUBMITTED, PENDING or RUNNABLE past a
threshold such as 15 minutes; the usual cause is a misconfiguration that never resolves itself).

:class:`TransitWatch` is the clock: armed at submission, disarmed once the job is RUNNING (or over), it fires
at most once. :func:`make_alert` is what the alert says, as JSON for ``--notify`` (keys documented in README):
``job_id``, ``name``, ``state``, ``since`` (Unix time of submission), ``waited_s``, ``transit_timeout_s``,
``waiting_for`` (a list of strings: nodes not joined and why, dependencies unfinished), ``on_stuck``,
``action`` (``wait`` or ``fail``), ``host`` and ``line`` (the one line shown on stderr).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["TransitWatch", "make_alert", "EXIT_STUCK", "ON_STUCK"]

EXIT_STUCK = 124  # as a timeout: a deadline passed (on_stuck: fail)
ON_STUCK = ("wait", "fail")


@dataclass
class TransitWatch:
    """``timeout_s`` None: never fires. ``since``: monotonic time of submission; ``since_wall``: the same as Unix
    time (for the alert)."""

    timeout_s: float | None
    since: float
    since_wall: float
    on_stuck: str = "wait"
    fired: bool = False
    armed: bool = True

    def due(self, now: float) -> bool:
        """True once, the first time it is asked past the deadline while armed."""
        if self.fired or not self.armed or self.timeout_s is None or now - self.since < self.timeout_s:
            return False
        self.fired = True
        return True

    def running(self) -> None:
        """The job reached RUNNING: in transit no more."""
        self.armed = False


def make_alert(watch: TransitWatch, now: float, job_id: str, name: str, state: str, waiting_for: list[str],
               host: str = "") -> dict[str, Any]:
    waited = now - watch.since
    what = "; ".join(waiting_for) if waiting_for else "nothing known"
    action = "failing it (on_stuck: fail)" if watch.on_stuck == "fail" else "still waiting (on_stuck: wait)"
    line = (f"job {job_id} stuck in {state} for {waited:.0f}s (transit_timeout {watch.timeout_s:g}s), "
            f"waiting for: {what}; {action}")
    return {"job_id": job_id, "name": name, "state": state, "since": round(watch.since_wall, 3),
            "waited_s": round(waited, 3), "transit_timeout_s": watch.timeout_s, "waiting_for": list(waiting_for),
            "on_stuck": watch.on_stuck, "action": watch.on_stuck, "host": host, "line": line}
