"""The node's processes and their dependencies, as ECS orders a task's containers: no I/O, no clock of its own.

:class:`ProcessGraph` keeps each process's state (waiting, starting, running, exited, never started) and health,
and answers what may start now (:meth:`ready`), what can never start (:meth:`doomed`, with the reason) and
whether the ranks may start. Conditions: START -- the process was started; COMPLETE -- it exited; SUCCESS -- it
exited 0; HEALTHY -- its health check passed. A condition that can no longer be met (the process never started,
exited non-zero for SUCCESS, ended or was found unhealthy before it was healthy for HEALTHY) dooms whatever waits
on it. Health checks follow Docker/ECS: the first ``interval`` after the start, then every ``interval``; failures
within ``start_period`` do not count; ``retries`` failures in a row make the process unhealthy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mnp.control import messages as m

__all__ = ["ProcState", "ProcessGraph", "RANKS"]

RANKS = "ranks"  # the ranks' entry in the graph (a name no process may have, mnp.spec.processes)


@dataclass
class ProcState:
    spec: m.ProcessStart
    state: str = "waiting"  # waiting | starting | running | exited | skipped (never started)
    started: bool = False
    code: int | None = None
    healthy: bool | None = None  # None: not yet known; False: failed `retries` checks in a row
    started_at: float = 0.0
    next_check: float | None = None
    failures: int = 0
    checking: bool = False
    remote: bool = False  # another node's process, known from PeerProcess messages


@dataclass
class ProcessGraph:
    procs: dict[str, ProcState]
    ranks_after: list[m.DependsOn] = field(default_factory=list)
    ranks_state: str = "waiting"  # waiting | released | skipped

    @classmethod
    def of(cls, start: m.Start) -> ProcessGraph:
        g = cls({p.name: ProcState(p) for p in start.processes}, list(start.ranks_depend_on))
        for d in [*start.ranks_depend_on, *(d for p in start.processes for d in p.depends_on)]:
            if d.node is not None:
                g.procs.setdefault(_key(d), ProcState(m.ProcessStart(d.name, [], essential=False), remote=True))
        return g

    def peer(self, msg: m.PeerProcess) -> bool:
        """Another node's process changed; False if nothing here depends on it."""
        t = self.procs.get(f"{msg.name}@{msg.node}")
        if t is None or not t.remote:
            return False
        t.started = t.started or msg.started
        if msg.exited:
            t.state, t.code = "exited", msg.code
        elif msg.started:
            t.state = "running"
        if msg.healthy is not None:
            t.healthy = msg.healthy
        return True

    def _why_not(self, dep: m.DependsOn) -> str | None:
        """"" when ``dep`` is met, None while it may still be, else why it never will be."""
        t = self.procs.get(_key(dep))
        if t is None:
            return f"no process named {dep.name!r} on this node"
        what = f"dependency {dep.name!r} ({dep.condition})" if dep.node is None else \
            f"dependency {dep.name!r} on node {dep.node} ({dep.condition})"
        if t.state == "skipped" or (t.state == "exited" and not t.started):
            return f"{what} never started"
        if dep.condition == "START":
            return "" if t.started else None
        if dep.condition == "HEALTHY":
            if t.healthy:
                return ""
            if t.healthy is False:
                times = f" {t.spec.health.retries} times" if t.spec.health else ""
                return f"{what} is unhealthy (its health check failed{times} in a row)"
            return f"{what} exited with code {t.code} before it was healthy" if t.state == "exited" else None
        if t.state != "exited":
            return None
        if dep.condition == "SUCCESS" and t.code != 0:
            return f"{what} exited with code {t.code}"
        return ""

    def _blocked(self, deps: list[m.DependsOn]) -> str | None:
        """"" when every dependency is met, None while some may still be, else the first that never will be."""
        waiting = False
        for d in deps:
            why = self._why_not(d)
            if why:
                return why
            waiting = waiting or why is None
        return None if waiting else ""

    def ready(self) -> list[str]:
        """Processes whose dependencies are all met and that have not been started."""
        return [n for n, p in self.procs.items() if p.state == "waiting" and not p.remote
                and self._blocked(p.spec.depends_on) == ""]

    def doomed(self) -> list[tuple[str, str]]:
        """Waiting processes that can never start, with the reason."""
        out = []
        for n, p in self.procs.items():
            if p.state == "waiting" and not p.remote:
                why = self._blocked(p.spec.depends_on)
                if why:
                    out.append((n, why))
        return out

    def ranks(self) -> str | None:
        """For the ranks: "" may start now, None must wait, else why they never can."""
        return self._blocked(self.ranks_after) if self.ranks_state == "waiting" else None

    @property
    def active(self) -> bool:
        """Something of ours runs (or is being started, or checked)."""
        return any((p.state in ("starting", "running") or p.checking) and not p.remote for p in self.procs.values())

    def waiting(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.state == "waiting" and not p.remote]

    # -- health ------------------------------------------------------------------------------------------------
    def due_checks(self, now: float) -> list[str]:
        out = []
        for n, p in self.procs.items():
            if p.state == "running" and p.spec.health is not None and not p.checking and not p.remote \
                    and p.next_check is not None and now >= p.next_check:
                p.checking = True
                out.append(n)
        return out

    def checked(self, name: str, ok: bool, now: float) -> bool | None:
        """Record a health check's result; returns the new health when it changed (True/False), else None."""
        p = self.procs[name]
        p.checking = False
        h = p.spec.health
        if h is None or p.state != "running":
            return None
        p.next_check = now + h.interval
        if ok:
            p.failures = 0
            if p.healthy is not True:
                p.healthy = True
                return True
            return None
        if now - p.started_at < h.start_period:
            return None  # failures in the start period do not count
        p.failures += 1
        if p.failures >= h.retries and p.healthy is not False:
            p.healthy = False
            return False
        return None

    def mark_running(self, name: str, now: float) -> None:
        p = self.procs[name]
        p.state, p.started, p.started_at = "running", True, now
        if p.spec.health is not None:
            p.next_check = now + p.spec.health.interval


def _key(dep: m.DependsOn) -> str:
    return dep.name if dep.node is None else f"{dep.name}@{dep.node}"
