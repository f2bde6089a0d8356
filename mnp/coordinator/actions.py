"""What the coordinator's engine asks its driver to do (the engine itself does no I/O).

Frozen msgspec structs rather than dataclasses, as :mod:`mnp.node.actions`: msgspec makes a struct class in C where
a dataclass compiles its generated methods, and this is imported before any node starts. Never encoded.
"""

from __future__ import annotations

import msgspec

from mnp.control import messages as m

__all__ = ["Send", "ShowOutput", "RankDone", "ProcessDone", "Transition", "Report", "Stuck", "Action"]


class Send(msgspec.Struct, frozen=True):
    node: int
    msg: m.ToAgent
    data: bytes | None = None


class ShowOutput(msgspec.Struct, frozen=True):
    node: int
    rank: int
    stream: str
    data: bytes
    process: str = ""  # a named process's output (``rank`` is then -1)


class RankDone(msgspec.Struct, frozen=True):
    rank: int


class ProcessDone(msgspec.Struct, frozen=True):
    node: int
    name: str


class Transition(msgspec.Struct, frozen=True):
    state: str


class Report(msgspec.Struct, frozen=True):
    kind: str  # "warning" | "security"
    text: str


class Stuck(msgspec.Struct, frozen=True):
    """The job is stuck in transit (:mod:`mnp.coordinator.transit`): in ``state``, waiting for ``waiting_for``."""

    state: str
    waiting_for: list[str]


Action = Send | ShowOutput | RankDone | ProcessDone | Transition | Report | Stuck
