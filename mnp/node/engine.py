"""The node agent's logic as a state machine without I/O (like :mod:`mnp.node.pmi`, which it holds).

The driver (:mod:`mnp.node.agent`) feeds it events -- a message from the coordinator, a PMI-1 line from a rank, a
rank that started, could not start or exited, the clock, a signal, the end of the SSH session -- and carries out
the actions it returns: :class:`Send` to the coordinator, :class:`Spawn` the node's processes, :class:`SignalAll`
of them, :class:`PmiReply` to a rank, :class:`RunExec` / :class:`KillExec` a launcher's daemon,
:class:`DeliverRexec` to the launcher's remote shell, :class:`Remount` /dev/shm, :class:`Log` a line.

Named processes (``Start.processes``) start in the order their ``depends_on`` allows (:mod:`mnp.node.depgraph`,
:class:`SpawnProcess`), their health checks run when due (:class:`RunHealth`; the driver runs the command, this
decides), the ranks wait for ``ranks_depend_on``, and an essential process that ends stops the node's work.

Liveness both ways: a heartbeat every ``heartbeat_s``; if the coordinator is silent for ``dead_s`` (or never
answers within ``first_contact_s``), the engine stops the ranks and ends. ``finished`` is true once the agent was
told (or decided) to stop and nothing of its own still runs.

What the agent accepts is checked here too: a remote command runs only on a node that was started as part of a
launcher's job, and only when it is a launcher daemon's command line (:mod:`mnp.launch.daemons`).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

from mnp.control import messages as m
from mnp.node.actions import (
    DeliverRexec,
    KillExec,
    Log,
    NodeAction,
    PmiReply,
    Remount,
    RunExec,
    RunHealth,
    Send,
    SignalAll,
    Spawn,
    SpawnProcess,
    WriteStdin,
)
from mnp.node.depgraph import ProcessGraph
from mnp.node.namedrules import NamedProcessRules
from mnp.node.pmi import PmiEvent, PmiServer

__all__ = ["NodeEngine", "Send", "Spawn", "SpawnProcess", "RunHealth", "SignalAll", "PmiReply", "RunExec", "KillExec",
           "DeliverRexec", "Remount", "WriteStdin", "Log", "NodeAction"]


@dataclass
class NodeEngine(NamedProcessRules):
    node: int
    heartbeat_s: float
    dead_s: float
    first_contact_s: float
    now: float
    endpoint: str = ""
    start: m.Start | None = None
    pmi: PmiServer | None = None
    live: set[int] = field(default_factory=set)  # ranks (or the launcher) started and not yet exited
    execs: set[str] = field(default_factory=set)  # remote commands running here
    running: bool = True  # False once told (or decided) to stop
    exit_code: int = 0
    grace_s: float = 5.0  # SIGTERM -> SIGKILL when an essential process ends the node's work

    def __post_init__(self) -> None:
        self.heard = False
        self.last_heard = self.now
        self.last_sent = -1e9
        self.kill_deadline: float | None = None
        self.stay = False  # stopped, but waiting for the coordinator's word before ending
        self.graph = ProcessGraph({})
        self.held_execs: list[m.Exec] = []  # a launcher's daemons, held until the ranks' dependencies are met

    # -- clock, signals, session -------------------------------------------------------------------------------
    def on_tick(self, now: float) -> list[NodeAction]:
        self.now = now
        out: list[NodeAction] = []
        if now - self.last_sent >= self.heartbeat_s:
            out.append(Send(m.Heartbeat()))
            self.last_sent = now
        limit = self.dead_s if self.heard else self.first_contact_s
        if (self.running or self.stay) and now - self.last_heard > limit:
            what = "silent" if self.heard else "not reachable"
            out.append(Log(f"coordinator {what} for {limit:g}s ({self.endpoint}); stopping"))
            out += self._stop(1.0)
            self.exit_code = 1
        if self.kill_deadline is not None and now >= self.kill_deadline:
            out.append(SignalAll(signal.SIGKILL))
            self.kill_deadline = None
        if self.running:
            for name in self.graph.due_checks(now):
                h = self.graph.procs[name].spec.health
                assert h is not None
                out.append(RunHealth(name, h.argv, h.timeout))
        return out

    def on_signal(self, signum: int) -> list[NodeAction]:
        return self._stop(2.0)

    def on_session_closed(self) -> list[NodeAction]:
        return [Log("session closed; stopping"), *self._stop(2.0)]

    def _stop(self, grace: float, stay: bool = False) -> list[NodeAction]:
        """Stop what runs here. ``stay``: the agent keeps going until told to end (its own work ended, or the
        coordinator stops a job whose work is done); else it ends once nothing of its own runs."""
        out: list[NodeAction] = []
        if self.running and self.start is not None:  # what never started is reported, so nothing waits for it
            for name in self.graph.waiting():
                out += self._never(name, "not started: the node's work ended first")
            if self.graph.ranks_state == "waiting":
                out += self._ranks_never("not started: the node's work ended first")
        self.stay = stay if self.running else self.stay and stay
        self.running = False
        if not self.live and not self.execs and not self.graph.active:
            return out
        deadline = self.now + grace
        if self.kill_deadline is None or deadline < self.kill_deadline:
            self.kill_deadline = deadline
        return [*out, SignalAll(signal.SIGTERM)]

    @property
    def finished(self) -> bool:
        return not self.running and not self.stay and not self.live and not self.execs and not self.graph.active

    # -- the coordinator's messages ----------------------------------------------------------------------------
    def on_message(self, msg: m.ToAgent | m.InvalidMessage, data: bytes | None, now: float) -> list[NodeAction]:
        self.now = now
        self.last_heard, self.heard = now, True
        if isinstance(msg, m.InvalidMessage):
            return [Log(f"invalid message from the coordinator ({msg.why}); dropped")]
        if isinstance(msg, m.Start):
            return self._on_start(msg)
        if isinstance(msg, m.Stdin):
            mine = [r for r in msg.ranks if self.start is not None and r in self.start.stdin_ranks]
            return [WriteStdin(mine, data or b"", msg.eof)] if mine else []
        if isinstance(msg, m.BarrierDone):
            if self.pmi is None:
                return [Log("barrier_done before start; dropped")]
            return [PmiReply(rank, line) for rank, line in self.pmi.barrier_done(msg.kvs)]
        if isinstance(msg, m.Kill):
            return self._stop(msg.grace, msg.stay)
        if isinstance(msg, m.Shutdown):
            return self._stop(1.0)
        if isinstance(msg, m.PeerProcess):
            return self._advance() if self.graph.peer(msg) else []
        if isinstance(msg, m.RemountShm):
            return [Remount(msg.size)]
        if isinstance(msg, m.Exec):
            return self._on_exec(msg)
        if isinstance(msg, m.ExecKill):
            return [KillExec(msg.id)] if msg.id in self.execs else []
        if isinstance(msg, (m.RexecOutput, m.RexecExit)):
            return [DeliverRexec(msg, data)] if self.start is not None and self.start.rsh else []
        return []  # Ping: being heard is all it is for

    def _on_start(self, msg: m.Start) -> list[NodeAction]:
        if self.start is not None or not self.running:
            return [Log("a second start (or a start after stop); dropped")]
        self.start = msg
        events: list[NodeAction] = []

        def on_event(ev: PmiEvent) -> None:
            if ev.kind == "abort":
                events.append(Send(m.Abort(ev.rank, ev.exit_code, ev.message)))

        self._pmi_events = events
        self.pmi = PmiServer(kvsname=msg.kvsname, size=msg.size, local_ranks=[r.rank for r in msg.ranks if r.pmi],
                             universe_size=msg.size, kvs={"PMI_process_mapping": msg.mapping},
                             on_barrier=lambda puts: events.append(Send(m.Barrier(puts))), on_event=on_event)
        self.graph = ProcessGraph.of(msg)
        self.grace_s = msg.grace
        return self._advance()

    def _on_exec(self, msg: m.Exec) -> list[NodeAction]:
        if self.start is None or not (self.start.daemons or self.start.rsh) or not self.running:
            why = "this node runs no launcher's daemons"
        else:
            from mnp.launch.daemons import check_daemon_command  # only a launcher's nodes get here: shlex, re

            why = check_daemon_command(msg.command) or ""
        if why:
            return self._refuse_exec(msg, why)
        if self.graph.ranks_state == "waiting":
            self.held_execs.append(msg)  # runs once the ranks' dependencies are met
            return []
        if self.graph.ranks_state == "skipped":
            return self._refuse_exec(msg, "the ranks' dependencies on this node can never be met")
        self.execs.add(msg.id)
        return [RunExec(msg.id, msg.command)]

    def _refuse_exec(self, msg: m.Exec, why: str) -> list[NodeAction]:
        return [Log(f"remote command {msg.id!r} refused: {why}"),
                Send(m.ExecOutput(msg.id, "stderr"), f"mnp: refused on node {self.node}: {why}\n".encode()),
                Send(m.ExecExit(msg.id, 126))]

    # -- processes ---------------------------------------------------------------------------------------------
    def spawned(self, pids: dict[int, int], failed: dict[int, tuple[int, str]]) -> list[NodeAction]:
        """The driver started the node's processes: ``pids`` rank -> pid, ``failed`` rank -> (code, reason)."""
        self.live |= set(pids)
        out: list[NodeAction] = [Send(m.Exit(rank, code, None, reason)) for rank, (code, reason) in failed.items()]
        out.append(Send(m.Started(pids)))
        if not self.running:  # told to stop while starting
            out += self._stop(1.0)
        return out

    def rank_exited(self, rank: int, returncode: int) -> list[NodeAction]:
        self.live.discard(rank)
        sig = -returncode if returncode < 0 else None
        name = signal.Signals(sig).name if sig and sig in signal.Signals._value2member_map_ else None
        return [Send(m.Exit(rank, 128 + sig if sig else returncode, name, ""))]

    def exec_exited(self, xid: str, returncode: int) -> list[NodeAction]:
        self.execs.discard(xid)
        return [Send(m.ExecExit(xid, returncode if returncode >= 0 else 128 - returncode))]

    def on_pmi_line(self, rank: int, line: str) -> list[NodeAction]:
        if self.pmi is None:
            return []
        replies: list[NodeAction] = [PmiReply(rank, r) for r in self.pmi.handle(rank, line)]
        events, self._pmi_events[:] = list(self._pmi_events), []
        return replies + events
