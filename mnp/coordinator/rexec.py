"""Remote commands for a launcher (``mpirun``/``mpiexec`` daemons), as the coordinator routes them: who may ask,
what may run, and who may answer. No I/O: each method returns the engine's actions.

- Only the node that runs the job's launcher may ask (``Rexec``), only while the launcher runs, and only for a
  launcher daemon's command line (:func:`mnp.launch.daemons.check_daemon_command`). A refused request is
  reported and answered (exit 126), so the launcher gives up instead of waiting.
- Only the node asked to run a command may report its output and exit (``ExecOutput``/``ExecExit``); only the
  asking node may cancel it (``RexecKill``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mnp.control import messages as m
from mnp.coordinator.actions import Action, Send
from mnp.launch.backends import Backend
from mnp.launch.daemons import check_daemon_command

__all__ = ["RemoteExecs"]


@dataclass
class _Exec:
    origin: int  # the node whose launcher asked
    target: int  # the node that runs it


class RemoteExecs:
    def __init__(self, refuse: Callable[[str], list[Action]]) -> None:
        self.refuse = refuse
        self.execs: dict[str, _Exec] = {}

    def request(self, node: int, msg: m.Rexec, backend: Backend | None, launcher_running: bool,
                hosts: dict[str, int]) -> list[Action]:
        if backend is None or backend.rexec_node is None:
            return self.refuse(f"node {node} asked to run a remote command, but no launcher runs in this job; "
                               "refused")
        if node != backend.rexec_node:
            return self.refuse(f"node {node} asked to run a remote command, but only node {backend.rexec_node} "
                               "runs the launcher; refused")
        if not launcher_running or msg.id in self.execs:
            return self.refuse(f"node {node} asked to run a remote command while no launcher was running; "
                               "refused") + self._answer_no(node, msg.id)
        target = hosts.get(msg.host)
        if target is None:
            return [Send(node, m.RexecOutput(msg.id, "stderr"),
                         f"mnp-rsh: {msg.host} is not a node of this job\n".encode()),
                    Send(node, m.RexecExit(msg.id, 255))]
        why = check_daemon_command(msg.command)
        if why is not None:
            return self.refuse(f"node {node} asked node {target} to run a command that is not a launcher "
                               f"daemon ({why}); refused") + self._answer_no(node, msg.id, why)
        self.execs[msg.id] = _Exec(node, target)
        return [Send(target, m.Exec(msg.id, msg.command))]

    @staticmethod
    def _answer_no(node: int, xid: str, why: str = "refused") -> list[Action]:
        return [Send(node, m.RexecOutput(xid, "stderr"), f"mnp: remote command refused: {why}\n".encode()),
                Send(node, m.RexecExit(xid, 126))]

    def _of(self, node: int, xid: str, what: str) -> tuple[_Exec | None, list[Action]]:
        ex = self.execs.get(xid)
        if ex is None or ex.target != node:
            return None, self.refuse(f"node {node} sent {what} for remote command {xid!r}, which it was not asked "
                                     "to run; dropped")
        return ex, []

    def output(self, node: int, msg: m.ExecOutput, data: bytes | None) -> list[Action]:
        ex, refused = self._of(node, msg.id, "output")
        if ex is None:
            return refused
        return [Send(ex.origin, m.RexecOutput(msg.id, msg.stream), data or b"")]

    def exited(self, node: int, msg: m.ExecExit) -> list[Action]:
        ex, refused = self._of(node, msg.id, "an exit")
        if ex is None:
            return refused
        del self.execs[msg.id]
        return [Send(ex.origin, m.RexecExit(msg.id, msg.code))]

    def kill(self, node: int, msg: m.RexecKill) -> list[Action]:
        ex = self.execs.get(msg.id)
        if ex is None or ex.origin != node:
            return []
        return [Send(ex.target, m.ExecKill(msg.id))]
