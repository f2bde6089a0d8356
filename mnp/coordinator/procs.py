"""The coordinator's view of the nodes' named processes (``processes:``): which run where, which are essential,
what became of each (:class:`JobProcesses`), and the engine's handlers of the agents' process messages
(:class:`ProcessMessages`, mixed into :class:`~mnp.coordinator.engine.JobEngine`): an essential process that
ends ends the job's work, its non-zero end fails the job, and nodes that depend on a process hear of it. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mnp.control import messages as m
from mnp.coordinator.actions import Action, ProcessDone, Report, Send, ShowOutput

if TYPE_CHECKING:
    from mnp.coordinator.engine import Failure

__all__ = ["JobProcesses", "ProcessMessages"]

Key = tuple[int, str]  # (node, process name)


@dataclass
class JobProcesses:
    essential: dict[Key, bool] = field(default_factory=dict)  # every process the nodes were given
    live: set[Key] = field(default_factory=set)  # given and not yet reported ended (or never started)
    results: dict[Key, dict[str, Any]] = field(default_factory=dict)
    watchers: dict[Key, set[int]] = field(default_factory=dict)  # a process -> the nodes that depend on it

    @classmethod
    def of(cls, starts: dict[int, m.Start]) -> JobProcesses:
        essential = {(node, p.name): p.essential for node, s in starts.items() for p in s.processes}
        out = cls(essential, set(essential), {k: {"essential": e} for k, e in essential.items()})
        for node, s in starts.items():
            for d in [*s.ranks_depend_on, *(d for p in s.processes for d in p.depends_on)]:
                if d.node is not None:
                    out.watchers.setdefault((d.node, d.name), set()).add(node)
        return out

    def relay(self, node: int, name: str, lost: set[int]) -> list[tuple[int, m.PeerProcess]]:
        """What the nodes that depend on ``name`` on ``node`` are told of its state now."""
        r = self.results[(node, name)]
        exited = "exit_code" in r
        msg = m.PeerProcess(node, name, started=bool(r.get("started", "pid" in r)), exited=exited,
                            code=r.get("exit_code"), healthy=r.get("healthy"))
        return [(w, msg) for w in sorted(self.watchers.get((node, name), ())) if w not in lost]

    def owns(self, node: int, name: str) -> bool:
        return (node, name) in self.essential

    def started(self, node: int, msg: m.ProcessStarted) -> None:
        self.results[(node, msg.name)]["pid"] = msg.pid

    def health(self, node: int, msg: m.ProcessHealth) -> None:
        self.results[(node, msg.name)]["healthy"] = msg.healthy

    def exited(self, node: int, msg: m.ProcessExit) -> bool:
        """Record an end; False if it was already recorded (a repeat changes nothing)."""
        key = (node, msg.name)
        if key not in self.live:
            return False
        self.live.discard(key)
        r = self.results[key]
        r.update(exit_code=msg.code, started=msg.started)
        if msg.signal:
            r["signal"] = msg.signal
        if msg.reason:
            r["reason"] = msg.reason
        return True

    def node_lost(self, node: int) -> None:
        self.live = {k for k in self.live if k[0] != node}

    def info(self) -> dict[str, dict[str, dict[str, Any]]]:
        """For the job's record: node -> process name -> essential, pid, exit code, signal, reason, health."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for (node, name), r in sorted(self.results.items()):
            out.setdefault(str(node), {})[name] = r
        return out


class ProcessMessages:
    """The agents' process messages, as :class:`~mnp.coordinator.engine.JobEngine` handles them."""

    procs: JobProcesses
    phase: str
    ending: str | None
    failure: Failure | None
    lost: set[int]

    def fail(self, f: Failure) -> None:
        raise NotImplementedError  # the engine's

    def _refuse(self, text: str) -> list[Action]:
        raise NotImplementedError  # the engine's

    @staticmethod
    def failure_of(code: int, reason: str, node: int) -> Failure:
        from mnp.coordinator.engine import Failure

        return Failure(code, reason, node)

    def _on_process_started(self, node: int, msg: m.ProcessStarted, data: bytes | None) -> list[Action]:
        if not self.procs.owns(node, msg.name):
            return self._refuse(f"node {node} reported process {msg.name!r}, which it was not given; dropped")
        self.procs.started(node, msg)
        return self._relay(node, msg.name)

    def _on_process_health(self, node: int, msg: m.ProcessHealth, data: bytes | None) -> list[Action]:
        if not self.procs.owns(node, msg.name):
            return self._refuse(f"node {node} reported process {msg.name!r}, which it was not given; dropped")
        self.procs.health(node, msg)
        out = self._relay(node, msg.name)
        return out if msg.healthy else [*out, Report("warning", f"node {node} process {msg.name} is unhealthy "
                                                                "(its health check failed)")]

    def _on_process_output(self, node: int, msg: m.ProcessOutput, data: bytes | None) -> list[Action]:
        if not self.procs.owns(node, msg.name):
            return self._refuse(f"node {node} sent output for process {msg.name!r}, which it was not given; dropped")
        return [ShowOutput(node, -1, msg.stream, data or b"", msg.name)]

    def _on_process_exit(self, node: int, msg: m.ProcessExit, data: bytes | None) -> list[Action]:
        """An essential process that ends ends the job's work (ECS: the task stops); a non-zero end fails it."""
        if not self.procs.owns(node, msg.name):
            return self._refuse(f"node {node} reported process {msg.name!r}, which it was not given; dropped")
        if not self.procs.exited(node, msg):
            return []
        if self.procs.essential[(node, msg.name)] and self.phase == "RUNNING" and self.ending is None:
            how = f"killed by {msg.signal}" if msg.signal else f"exited with code {msg.code}"
            if not msg.started:
                how = "did not start"
            who = f"node {node} process {msg.name}"
            if msg.code != 0 and self.failure is None:
                self.fail(self.failure_of(msg.code, f"{who} {how}" + (f": {msg.reason}" if msg.reason else ""), node))
            self.ending = f"{who} (essential) {how}"
        return [ProcessDone(node, msg.name), *self._relay(node, msg.name)]

    def _relay(self, node: int, name: str) -> list[Action]:
        """Nodes whose processes (or ranks) depend on this one hear of its state (PeerProcess)."""
        return [Send(w, msg) for w, msg in self.procs.relay(node, name, self.lost)]
