"""Job dependencies as written: ``JOB``, ``JOB:N_TO_N``, ``JOB:SEQUENTIAL`` or ``SEQUENTIAL`` (AWS Batch's
``dependsOn`` with its ``type``). What they mean when the job runs is :mod:`mnp.coordinator.schedule`'s."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Dependency", "parse_dependency", "KINDS"]

KINDS = ("SEQUENTIAL", "N_TO_N")


@dataclass(frozen=True)
class Dependency:
    """``job``: what the user named (an id, a prefix, a name) until resolved, then the job's id; '' for a bare
    SEQUENTIAL. ``kind``: '' (the whole job), ``N_TO_N`` or ``SEQUENTIAL``."""

    job: str
    kind: str = ""

    def __str__(self) -> str:
        return ":".join(p for p in (self.job, self.kind) if p)


def parse_dependency(text: str) -> Dependency:
    """``JOB``, ``JOB:N_TO_N``, ``JOB:SEQUENTIAL`` or ``SEQUENTIAL`` (kinds in any case). ``JOB:3`` (an array's
    child) is a plain dependency on that child. Raises ValueError saying what is wrong."""
    text = text.strip()
    head, colon, tail = text.rpartition(":")
    if colon and tail.upper() in KINDS:
        if not head and tail.upper() == "N_TO_N":
            raise ValueError("N_TO_N needs the array it follows: JOB:N_TO_N")
        return Dependency(head, tail.upper())
    if text.upper() == "SEQUENTIAL":
        return Dependency("", "SEQUENTIAL")
    if not text:
        raise ValueError("empty (give JOB, JOB:N_TO_N, JOB:SEQUENTIAL or SEQUENTIAL)")
    return Dependency(text)
