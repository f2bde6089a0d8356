"""Stage 5, the coordinator: one job from a validated spec to a final state, on the main node.

:mod:`engine` decides (no I/O), :mod:`job` wires it to the cluster, the channel and the records, :mod:`attempts`
retries, :mod:`events` is what it reports.

``launch``, ``LaunchRequest`` and ``JobResult`` are loaded on first use, so a module that only needs the events
(the CLI's renderer) does not load the whole coordinator: ``mnp launch`` starts reaching SSH hosts first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mnp.coordinator.attempts import launch
    from mnp.coordinator.job import JobResult, LaunchRequest

__all__ = ["JobResult", "LaunchRequest", "launch"]


def __getattr__(name: str) -> Any:
    if name == "launch":
        from mnp.coordinator.attempts import launch

        return launch
    if name in ("JobResult", "LaunchRequest"):
        from mnp.coordinator import job

        return getattr(job, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
