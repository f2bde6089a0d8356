"""Stage 5, the coordinator: one job from a validated spec to a final state, on the main node."""

from mnp.coordinator.job import JobResult, LaunchRequest, launch

__all__ = ["JobResult", "LaunchRequest", "launch"]
