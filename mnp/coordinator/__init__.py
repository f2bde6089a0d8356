"""Stage 5, the coordinator: one job from a validated spec to a final state, on the main node.

:mod:`engine` decides (no I/O), :mod:`job` wires it to the cluster, the channel and the records, :mod:`attempts`
retries, :mod:`events` is what it reports.
"""

from mnp.coordinator.attempts import launch
from mnp.coordinator.job import JobResult, LaunchRequest

__all__ = ["JobResult", "LaunchRequest", "launch"]
