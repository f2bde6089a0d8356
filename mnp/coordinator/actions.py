"""What the coordinator's engine asks its driver to do (the engine itself does no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from mnp.control import messages as m

__all__ = ["Send", "ShowOutput", "RankDone", "ProcessDone", "Transition", "Report", "Stuck", "Action"]


@dataclass(frozen=True)
class Send:
    node: int
    msg: m.ToAgent
    data: bytes | None = None


@dataclass(frozen=True)
class ShowOutput:
    node: int
    rank: int
    stream: str
    data: bytes
    process: str = ""  # a named process's output (``rank`` is then -1)


@dataclass(frozen=True)
class RankDone:
    rank: int


@dataclass(frozen=True)
class ProcessDone:
    node: int
    name: str


@dataclass(frozen=True)
class Transition:
    state: str


@dataclass(frozen=True)
class Report:
    kind: str  # "warning" | "security"
    text: str


@dataclass(frozen=True)
class Stuck:
    """The job is stuck in transit (:mod:`mnp.coordinator.transit`): in ``state``, waiting for ``waiting_for``."""

    state: str
    waiting_for: list[str]


Action = Send | ShowOutput | RankDone | ProcessDone | Transition | Report | Stuck
