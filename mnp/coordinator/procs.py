"""The coordinator's view of the nodes' named processes (``processes:``): which run where, which are essential,
what became of each. The rules that follow from it (an essential process that ends ends the job's work; its
failure fails the job) are :class:`~mnp.coordinator.engine.JobEngine`'s; this is its bookkeeping, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mnp.control import messages as m

__all__ = ["JobProcesses"]

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
