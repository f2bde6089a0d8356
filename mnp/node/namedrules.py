"""The node engine's rules for its named processes (``Start.processes``), mixed into
:class:`~mnp.node.engine.NodeEngine`: start what :mod:`mnp.node.depgraph` says may start, report what never can
(an essential one, or the ranks, then end the node's work), follow health checks, and stop the node's work when an
essential process ends (ECS: an essential container's end stops the task). No I/O."""

from __future__ import annotations

import signal

from mnp.control import messages as m
from mnp.node.actions import Log, NodeAction, Send, Spawn, SpawnProcess
from mnp.node.depgraph import ProcessGraph

__all__ = ["NamedProcessRules"]


class NamedProcessRules:
    """Needs the engine's ``start``, ``running``, ``now``, ``grace_s``, ``graph``, ``held_execs``, ``_stop``,
    ``_on_exec`` and ``_refuse_exec``."""

    start: m.Start | None
    running: bool
    now: float
    grace_s: float
    graph: ProcessGraph
    held_execs: list[m.Exec]

    def _stop(self, grace: float, stay: bool = False) -> list[NodeAction]:
        raise NotImplementedError  # the engine's

    def _on_exec(self, msg: m.Exec) -> list[NodeAction]:
        raise NotImplementedError  # the engine's

    def _refuse_exec(self, msg: m.Exec, why: str) -> list[NodeAction]:
        raise NotImplementedError  # the engine's

    def _advance(self) -> list[NodeAction]:
        """Start what may start now; report what never can (an essential one, or the ranks, end the node's work)."""
        out: list[NodeAction] = []
        if not self.running or self.start is None:
            return out
        why = self.graph.ranks()
        if why == "":
            self.graph.ranks_state = "released"
            out.append(Spawn(self.start))
            held, self.held_execs = self.held_execs, []
            for x in held:
                out += self._on_exec(x)
        elif why:
            return out + self._ranks_never(f"not started: {why}") + self._stop(self.grace_s, stay=True)
        doomed = self.graph.doomed()
        while doomed:  # one that never starts may doom those that wait on it
            for name, why in doomed:
                out += self._never(name, f"not started: {why}")
                if self.graph.procs[name].spec.essential:
                    return out + self._stop(self.grace_s, stay=True)
            doomed = self.graph.doomed()
        if self.graph.ranks():  # the ranks waited on one of those
            return out + self._advance()
        for name in self.graph.ready():
            self.graph.procs[name].state = "starting"
            out.append(SpawnProcess(self.graph.procs[name].spec))
        return out

    def _never(self, name: str, reason: str) -> list[NodeAction]:
        p = self.graph.procs[name]
        p.state, p.code = "skipped", 1
        return [Log(f"process {name}: {reason}"), Send(m.ProcessExit(name, 1, None, reason, started=False))]

    def _ranks_never(self, reason: str) -> list[NodeAction]:
        self.graph.ranks_state = "skipped"
        held, self.held_execs = self.held_execs, []
        out: list[NodeAction] = [Log(f"ranks: {reason}")]
        for x in held:
            out += self._refuse_exec(x, reason)
        assert self.start is not None
        return out + [Send(m.Exit(r.rank, 1, None, reason)) for r in self.start.ranks]

    def process_spawned(self, name: str, pid: int) -> list[NodeAction]:
        self.graph.mark_running(name, self.now)
        return [Send(m.ProcessStarted(name, pid)), *self._advance()]

    def process_failed(self, name: str, code: int, reason: str) -> list[NodeAction]:
        """The driver could not start a process."""
        p = self.graph.procs[name]
        p.state, p.code = "exited", code
        out: list[NodeAction] = [Send(m.ProcessExit(name, code, None, reason, started=False))]
        return out + (self._stop(self.grace_s, stay=True) if p.spec.essential else self._advance())

    def process_exited(self, name: str, returncode: int) -> list[NodeAction]:
        p = self.graph.procs[name]
        sig = -returncode if returncode < 0 else None
        signame = signal.Signals(sig).name if sig and sig in signal.Signals._value2member_map_ else None
        p.state, p.code, p.checking = "exited", 128 + sig if sig else returncode, False
        out: list[NodeAction] = [Send(m.ProcessExit(name, p.code, signame, ""))]
        if p.spec.essential and self.running:  # ECS: an essential container's end stops the task
            return out + self._stop(self.grace_s, stay=True)
        return out + self._advance()

    def health_result(self, name: str, ok: bool, now: float) -> list[NodeAction]:
        """A health check ended: exit 0 within its timeout is ``ok``."""
        self.now = now
        change = self.graph.checked(name, ok, now)
        if change is None:
            return []
        return [Send(m.ProcessHealth(name, change)), *self._advance()]
