"""What the node engine (:mod:`mnp.node.engine`) asks its driver (:mod:`mnp.node.agent`) to do.

Frozen msgspec structs rather than dataclasses: every agent defines them at start-up, and msgspec makes a struct
class in C where a dataclass compiles its generated methods (equality, hashing and repr are the same). Never encoded.
"""

from __future__ import annotations

import msgspec

from mnp.control import messages as m

__all__ = ["Send", "Spawn", "SpawnProcess", "RunHealth", "SignalAll", "PmiReply", "RunExec", "KillExec",
           "DeliverRexec", "WriteStdin", "Remount", "Log", "NodeAction"]


class Send(msgspec.Struct, frozen=True):
    msg: m.ToCoordinator
    data: bytes | None = None


class Spawn(msgspec.Struct, frozen=True):
    start: m.Start


class SpawnProcess(msgspec.Struct, frozen=True):
    """Start one of the node's named processes (its dependencies are met)."""

    spec: m.ProcessStart


class RunHealth(msgspec.Struct, frozen=True):
    """Run a process's health check (its command, within its timeout) and report with ``health_result``."""

    name: str
    argv: list[str]
    timeout: float


class SignalAll(msgspec.Struct, frozen=True):
    sig: int


class PmiReply(msgspec.Struct, frozen=True):
    rank: int
    line: str


class RunExec(msgspec.Struct, frozen=True):
    id: str
    command: str


class KillExec(msgspec.Struct, frozen=True):
    id: str


class DeliverRexec(msgspec.Struct, frozen=True):
    msg: m.RexecOutput | m.RexecExit
    data: bytes | None


class WriteStdin(msgspec.Struct, frozen=True):
    ranks: list[int]
    data: bytes
    eof: bool


class Remount(msgspec.Struct, frozen=True):
    size: int


class Log(msgspec.Struct, frozen=True):
    text: str


NodeAction = (Send | Spawn | SpawnProcess | RunHealth | SignalAll | PmiReply | RunExec | KillExec | DeliverRexec
              | WriteStdin | Remount | Log)
