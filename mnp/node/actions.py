"""What the node engine (:mod:`mnp.node.engine`) asks its driver (:mod:`mnp.node.agent`) to do."""

from __future__ import annotations

from dataclasses import dataclass

from mnp.control import messages as m

__all__ = ["Send", "Spawn", "SpawnProcess", "RunHealth", "SignalAll", "PmiReply", "RunExec", "KillExec",
           "DeliverRexec", "WriteStdin", "Remount", "Log", "NodeAction"]


@dataclass(frozen=True)
class Send:
    msg: m.ToCoordinator
    data: bytes | None = None


@dataclass(frozen=True)
class Spawn:
    start: m.Start


@dataclass(frozen=True)
class SpawnProcess:
    """Start one of the node's named processes (its dependencies are met)."""

    spec: m.ProcessStart


@dataclass(frozen=True)
class RunHealth:
    """Run a process's health check (its command, within its timeout) and report with ``health_result``."""

    name: str
    argv: list[str]
    timeout: float


@dataclass(frozen=True)
class SignalAll:
    sig: int


@dataclass(frozen=True)
class PmiReply:
    rank: int
    line: str


@dataclass(frozen=True)
class RunExec:
    id: str
    command: str


@dataclass(frozen=True)
class KillExec:
    id: str


@dataclass(frozen=True)
class DeliverRexec:
    msg: m.RexecOutput | m.RexecExit
    data: bytes | None


@dataclass(frozen=True)
class WriteStdin:
    ranks: list[int]
    data: bytes
    eof: bool


@dataclass(frozen=True)
class Remount:
    size: int


@dataclass(frozen=True)
class Log:
    text: str


NodeAction = (Send | Spawn | SpawnProcess | RunHealth | SignalAll | PmiReply | RunExec | KillExec | DeliverRexec
              | WriteStdin | Remount | Log)
