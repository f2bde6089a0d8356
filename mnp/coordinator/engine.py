"""The coordinator's job logic as a state machine without I/O (like :mod:`mnp.node.pmi`).

The driver (:mod:`mnp.coordinator.job`) feeds it events -- a message from a node (:meth:`JobEngine.on_message`),
the clock and the provider's list of dead agents (:meth:`JobEngine.on_tick`), a signal
(:meth:`JobEngine.interrupt`) -- and carries out the actions it returns: :class:`Send` a message,
:class:`ShowOutput`, :class:`RankDone` (flush a rank's output), :class:`Transition` the record, :class:`Report` a
line to the user. Phases::

    JOINING --(every hello)--> PLANNING --start()--> RUNNING --(all exited | failure)--> STOPPING --> DONE
                                                                                        shutdown() --> BYE

The first failure wins: it fixes the exit code and reason, and every rank on every node is told to stop (SIGTERM,
SIGKILL after ``grace_s``). Before the job is RUNNING, ``transit`` (a :class:`~mnp.coordinator.transit.
TransitWatch`) may fire once: a :class:`Stuck` action naming the state and the nodes not joined (RUNNABLE) or not
started (STARTING). A node that is lost (its agent exited, or it fell silent for ``dead_s``) takes its
ranks with it: they are counted as ended at once, so the job ends as soon as the other nodes have stopped theirs.

Named processes (``processes:``, :mod:`mnp.coordinator.procs`) follow ECS's ``essential``: the first essential
process to end ends the job's work (its non-zero exit fails the job, as a rank's would); when the work is done
(that, or every rank exited) whatever still runs is stopped the same way, and being stopped is no failure. A
process other nodes depend on has its state relayed to them (``PeerProcess``).

What a peer may send is checked here, by role: messages come tagged with the node their CURVE key belongs to, a
node may report only its own ranks, only the node running a launcher may ask for remote commands (and only while
the launcher runs, and only for the launcher's daemons), and only the node asked to run a command may report on
it. Anything else is refused with a :class:`Report` of kind ``"security"`` and changes nothing.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any

import msgspec

from mnp.control import messages as m
from mnp.control.tree import Tree
from mnp.coordinator.actions import Action, RankDone, Report, Send, ShowOutput, Stuck, Transition
from mnp.coordinator.procs import JobProcesses, ProcessMessages
from mnp.coordinator.rexec import RemoteExecs
from mnp.coordinator.telemetry import TelemetryBook
from mnp.coordinator.transit import TransitWatch
from mnp.launch.backends import Backend

__all__ = ["JobEngine", "Timing", "Failure",
           "EXIT_TIMEOUT", "EXIT_INTERRUPTED", "EXIT_NODE_LOST"]

EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130
EXIT_NODE_LOST = 255


#: refused messages said and kept one by one (the rest are counted: ``refused_count``)
MAX_REFUSED = 100

@dataclass(frozen=True)
class Timing:
    heartbeat_s: float = 1.0
    dead_s: float = 15.0
    grace_s: float = 5.0
    join_timeout_s: float = 120.0
    timeout_s: float | None = None  # the job's own timeout, counted from the engine's start
    bye_s: float = 3.0  # how long shutdown waits for the agents' goodbyes


@dataclass(frozen=True)
class Failure:
    exit_code: int
    reason: str
    node: int | None = None
    rank: int | None = None
    retryable: bool = True
    cancelled: bool = False  # the user stopped it (Ctrl-C, SIGTERM): CANCELLED, not FAILED




@dataclass
class JobEngine(ProcessMessages):
    n: int
    timing: Timing
    now: float
    phase: str = "JOINING"
    hellos: dict[int, m.Hello] = field(default_factory=dict)
    failure: Failure | None = None
    backend: Backend | None = None
    waiting: dict[int, int] = field(default_factory=dict)  # process -> node, until it exits
    started: set[int] = field(default_factory=set)
    barrier: dict[int, dict[str, str]] = field(default_factory=dict)
    barriers: int = 0  # PMI barriers completed (the record's control figures)
    hosts: dict[str, int] = field(default_factory=dict)  # address or hostname -> node (remote commands)
    lost: set[int] = field(default_factory=set)
    byes: dict[int, m.Bye] = field(default_factory=dict)
    remounted: dict[int, m.ShmRemounted] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # the first MAX_REFUSED refusals
    refused_count: int = 0
    marks: dict[str, float] = field(default_factory=dict)  # phase name -> time it was reached
    transit: TransitWatch | None = None  # the stuck-in-transit clock (None: not watched)
    why_missing: dict[int, str] = field(default_factory=dict)  # node -> what the provider knows of its delay
    telemetry: TelemetryBook = field(default_factory=TelemetryBook)  # each node's samples: peaks, a short series
    tree: Tree | None = None  # the control tree (None: a star): a lost relay takes its subtree with it

    def __post_init__(self) -> None:
        self.t0 = self.now
        self.last_heard = {i: self.now for i in range(self.n)}
        self.last_ping = -1e9
        self.stop_deadline: float | None = None
        self.bye_deadline: float | None = None
        self.unheard: set[int] = set()  # at shutdown: nodes never heard from (their goodbye is not waited for)
        self.signum: int | None = None
        self.rexec = RemoteExecs(self._refuse)
        self.procs = JobProcesses()
        self.had_ranks = False
        self.ending: str | None = None  # an essential process ended: the job's work is over (why)

    # -- inputs ------------------------------------------------------------------------------------------------
    def interrupt(self, signum: int) -> None:
        """A signal arrived (the driver's handler only records it; the next tick acts on it)."""
        if self.signum is None:
            self.signum = signum

    def start(self, backend: Backend, starts: dict[int, m.Start], hosts: dict[str, int], now: float) -> list[Action]:
        """PLANNING -> RUNNING: send every node its part."""
        self.backend, self.hosts = backend, hosts
        self.waiting = dict(backend.waits)
        self.had_ranks = bool(self.waiting)
        self.procs = JobProcesses.of(starts)
        self.phase = "RUNNING"
        self.marks["started"] = now
        return [Send(i, msgspec.structs.replace(s, grace=self.timing.grace_s) if s.processes else s)
                for i, s in sorted(starts.items())]

    def on_stdin(self, data: bytes, eof: bool = False) -> list[Action]:
        """mnp's own standard input: to the processes that read it (rank 0 by default), until they are gone."""
        if self.backend is None or self.phase != "RUNNING":
            return []
        return [Send(node, m.Stdin(ranks, eof), data) for node, ranks in sorted(self.backend.stdin_targets.items())
                if node not in self.lost]

    def shutdown(self, now: float) -> list[Action]:
        """Whatever the phase: ask every agent to stop and say goodbye (BYE ends when all did, or after bye_s)."""
        self.phase = "BYE"
        self.bye_deadline = now + self.timing.bye_s
        # a node never heard from cannot be reached (no route to it yet): its goodbye is not waited for; its agent
        # ends with its connection (the channel closes next) or by its provider's teardown
        self.unheard = {i for i in range(self.n) if i not in self.hellos and i not in self.lost}
        return _to_all(m.Shutdown(), [i for i in range(self.n) if i not in self.lost])

    def fail(self, f: Failure) -> None:
        if self.failure is None:
            self.failure = f

    def on_tick(self, now: float, dead_agents: dict[int, int]) -> list[Action]:
        self.now = now
        out: list[Action] = []
        if now - self.last_ping >= self.timing.heartbeat_s and self.phase not in ("BYE", "DONE"):
            out += _to_all(m.Ping(), [i for i in sorted(self.hellos) if i not in self.lost])
            self.last_ping = now
        for node, status in sorted(dead_agents.items()):
            if self.phase in ("BYE", "DONE"):
                self.lost.add(node)  # told to go, or the job is over: an agent that ended is no failure
            elif self.phase == "STOPPING" and self.failure is None and node not in self.lost:
                out += self._forget(node)  # the job's work is done: what ran there is over, no failure
            elif node not in self.lost:
                out += self._node_lost(node, f"its agent exited (status {status})" if node in self.hellos
                                       else f"it failed to start its agent (exit status {status})")
        if self.phase == "BYE":
            if set(self.byes) | self.lost | self.unheard >= set(range(self.n)) or now > (self.bye_deadline or now):
                self.phase = "DONE"
            return out
        if self.failure is None:
            self._check_stop(now)
        if self.failure is None and self.phase == "JOINING" and now - self.t0 > self.timing.join_timeout_s:
            missing = [i for i in range(self.n) if i not in self.hellos]
            self.fail(Failure(EXIT_NODE_LOST, f"node(s) {', '.join(map(str, missing))} did not join within "
                              f"{self.timing.join_timeout_s:g}s ({len(self.hellos)}/{self.n} joined: "
                              f"{', '.join(map(str, sorted(self.hellos))) or 'none'})"))
        if self.failure is None and self.transit is not None and self.transit.due(now):
            out.append(self._stuck())
        if self.failure is None and self.phase == "RUNNING":
            silent = [i for i, t in self.last_heard.items() if now - t > self.timing.dead_s and i not in self.lost]
            if silent:
                out += self._node_lost(silent[0], f"no heartbeat for {self.timing.dead_s:g}s")
        if self.failure is not None and self.phase in ("JOINING", "PLANNING"):
            self.phase = "DONE"  # nothing runs yet: the driver shuts down and tears down
        elif self.failure is not None and self.phase == "RUNNING":
            self.phase = "STOPPING"
            self.stop_deadline = now + self.timing.grace_s + 5
            out += _to_all(m.Kill(self.timing.grace_s), [i for i in range(self.n) if i not in self.lost])
        if self.phase == "RUNNING" and self.failure is None and (self.waiting or self.procs.live) \
                and (self.ending or (self.had_ranks and not self.waiting)):
            # the job's work is done (every rank exited, or an essential process ended): stop what still runs, and
            # keep the agents until shutdown (an agent that ended now would look lost)
            self.phase = "STOPPING"
            self.stop_deadline = now + self.timing.grace_s + 5
            out += _to_all(m.Kill(self.timing.grace_s, stay=True), [i for i in range(self.n) if i not in self.lost])
        if self.phase == "STOPPING" and (not (self.waiting or self.procs.live) or now > (self.stop_deadline or now)):
            self.phase = "DONE"  # nodes that do not answer are torn down by the provider
        if self.phase == "RUNNING" and not self.waiting and not self.procs.live:
            self.phase = "DONE"
        return out

    def _stuck(self) -> Stuck:
        if self.phase == "JOINING":
            missing = self.missing()
            return Stuck("RUNNABLE", [f"node {i} to join" + (f" ({self.why_missing[i]})" if i in self.why_missing
                                                             else " (its agent has not dialled in)")
                                      for i in missing[:16]] + ([f"{len(missing) - 16} more node(s)"]
                                                                if len(missing) > 16 else []))
        unstarted = [i for i in range(self.n) if i not in self.started and i not in self.lost]
        if self.phase == "PLANNING":
            return Stuck("STARTING", ["the ranks' plan (transport, /dev/shm) to be made"])
        return Stuck("STARTING", [f"node {i} to start its ranks" for i in unstarted[:16]])

    def _check_stop(self, now: float) -> None:
        if self.signum is not None:
            name = signal.Signals(self.signum).name
            code = EXIT_INTERRUPTED if self.signum == signal.SIGINT else 128 + self.signum
            self.fail(Failure(code, f"interrupted by {name}", retryable=False, cancelled=True))
        elif self.timing.timeout_s is not None and now - self.t0 > self.timing.timeout_s:
            self.fail(Failure(EXIT_TIMEOUT, f"timeout: the job ran past {self.timing.timeout_s:g}s", retryable=False))

    def _node_lost(self, node: int, why: str) -> list[Action]:
        """A lost node's processes are over: nothing waits for them, and the job fails (node named)."""
        self.fail(Failure(EXIT_NODE_LOST, f"node {node} lost: {why}", node))
        return self._forget(node)

    def _forget(self, node: int) -> list[Action]:
        """``node`` is gone, and with it (in a tree) every node it relayed for: they can be reached no more."""
        gone = self.tree.subtree(node) if self.tree is not None else [node]
        out: list[Action] = []
        for lost in gone:
            if lost != node and lost in self.lost:
                continue
            self.lost.add(lost)
            self.procs.node_lost(lost)
            for proc in [p for p, n in self.waiting.items() if n == lost]:
                del self.waiting[proc]
                out.append(RankDone(proc))
        return out

    # -- messages ----------------------------------------------------------------------------------------------
    def on_message(self, node: int, msg: m.ToCoordinator | m.InvalidMessage, data: bytes | None,
                   now: float) -> list[Action]:
        if node in self.lost and self.phase in ("BYE", "DONE") and 0 <= node < self.n:
            # told to go: its agent may end before its last messages are read (its Bye among them); no stranger
            if isinstance(msg, m.Bye):
                self.byes[node] = msg
            return []
        if not 0 <= node < self.n or node in self.lost:
            return self._refuse(f"message from node {node}, which is not (or no longer) in this job")
        self.last_heard[node] = now
        if isinstance(msg, m.InvalidMessage):
            return self._refuse(f"node {node} sent an invalid message ({msg.why}); dropped")
        handler = getattr(self, f"_on_{msg.__struct_config__.tag}")
        return handler(node, msg, data)  # type: ignore[no-any-return]

    def refuse(self, text: str) -> list[Action]:
        """A frame refused before it was a message (by the channel): said and kept like the engine's own."""
        return self._refuse(text)

    def _refuse(self, text: str) -> list[Action]:
        """Refused: said and kept, the first :data:`MAX_REFUSED` of them; after that only counted, so a peer that
        floods forged messages costs a counter, not memory and a line each."""
        self.refused_count += 1
        if self.refused_count <= MAX_REFUSED:
            self.refused.append(text)
            return [Report("security", text)]
        if self.refused_count == MAX_REFUSED + 1:
            return [Report("security", f"more than {MAX_REFUSED} messages refused; the rest are only counted")]
        return []

    def _on_hello(self, node: int, msg: m.Hello, data: bytes | None) -> list[Action]:
        if self.phase != "JOINING" or node in self.hellos:
            return []  # an agent that reconnected says hello again: nothing changes
        self.hellos[node] = msg
        if len(self.hellos) == self.n and self.failure is None:
            self.phase = "PLANNING"
            self.marks["joined"] = self.now
            return [Transition("STARTING")]
        return []

    def _on_heartbeat(self, node: int, msg: m.Heartbeat, data: bytes | None) -> list[Action]:
        return []

    def _owns(self, node: int, rank: int) -> bool:
        return self.backend is not None and self.backend.rank_nodes.get(rank) == node

    def _on_output(self, node: int, msg: m.Output, data: bytes | None) -> list[Action]:
        if not self._owns(node, msg.rank):
            return self._refuse(f"node {node} sent output for rank {msg.rank}, which is not its own; dropped")
        return [ShowOutput(node, msg.rank, msg.stream, data or b"")]

    def _on_started(self, node: int, msg: m.Started, data: bytes | None) -> list[Action]:
        if self.phase not in ("RUNNING", "STOPPING") or node in self.started:
            return []
        self.started.add(node)
        if len(self.started) == self.n and self.failure is None:
            self.marks["running"] = self.now
            if self.transit is not None:
                self.transit.running()
            return [Transition("RUNNING")]
        return []

    def _on_node_failed(self, node: int, msg: m.NodeFailed, data: bytes | None) -> list[Action]:
        """A relay could not start its child ``msg.node``, or lost its session: named by its host, as a host that
        the coordinator dials itself."""
        if self.tree is None or self.tree.parent(msg.node) != node:
            return self._refuse(f"node {node} reported node {msg.node} failed, which is not its child; dropped")
        if msg.node in self.lost:
            return []
        if msg.node not in self.hellos:
            self.fail(Failure(1, f"{msg.name}: {msg.problem}", msg.node))
            return self._forget(msg.node)
        return self._node_lost(msg.node, f"{msg.name}: {msg.problem}")

    def _on_exit(self, node: int, msg: m.Exit, data: bytes | None) -> list[Action]:
        if self.waiting.get(msg.rank) != node:
            if self._owns(node, msg.rank):
                return []  # already counted (a lost node's ranks) or not waited for
            return self._refuse(f"node {node} reported the exit of rank {msg.rank}, which is not its own; dropped")
        del self.waiting[msg.rank]
        if msg.code != 0 and self.failure is None and self.ending is None and self.backend is not None:
            how = f"killed by {msg.signal}" if msg.signal else f"exited with code {msg.code}"
            extra = f": {msg.reason}" if msg.reason else ""
            self.fail(Failure(msg.code, f"{self.backend.who(node, msg.rank)} {how}{extra}", node, msg.rank))
        return [RankDone(msg.rank)]

    def _on_abort(self, node: int, msg: m.Abort, data: bytes | None) -> list[Action]:
        if not self._owns(node, msg.rank):
            return self._refuse(f"node {node} sent MPI_Abort for rank {msg.rank}, which is not its own; dropped")
        code = msg.code or 1
        text = f": {msg.message}" if msg.message else ""
        self.fail(Failure(code, f"node {node} rank {msg.rank} called MPI_Abort({code}){text}", node, msg.rank))
        return []

    def _on_barrier(self, node: int, msg: m.Barrier, data: bytes | None) -> list[Action]:
        if self.backend is None or self.backend.name != "pmi":
            return self._refuse(f"node {node} entered a PMI barrier, but no node serves PMI in this job; dropped")
        self.barrier[node] = msg.puts
        if len(self.barrier) < self.n - len(self.lost):
            return []
        kvs: dict[str, str] = {}
        for puts in self.barrier.values():
            kvs.update(puts)
        self.barrier = {}
        self.barriers += 1
        return _to_all(m.BarrierDone(kvs), [i for i in range(self.n) if i not in self.lost])

    def _on_rexec(self, node: int, msg: m.Rexec, data: bytes | None) -> list[Action]:
        from mnp.launch.backends import LAUNCHER

        running = LAUNCHER in self.waiting and self.phase == "RUNNING"
        return self.rexec.request(node, msg, self.backend, running, self.hosts)

    def _on_exec_output(self, node: int, msg: m.ExecOutput, data: bytes | None) -> list[Action]:
        return self.rexec.output(node, msg, data)

    def _on_exec_exit(self, node: int, msg: m.ExecExit, data: bytes | None) -> list[Action]:
        return self.rexec.exited(node, msg)

    def _on_rexec_kill(self, node: int, msg: m.RexecKill, data: bytes | None) -> list[Action]:
        return self.rexec.kill(node, msg)

    def _on_shm_remounted(self, node: int, msg: m.ShmRemounted, data: bytes | None) -> list[Action]:
        if self.phase == "PLANNING":
            self.remounted[node] = msg
        return []

    def _on_telemetry(self, node: int, msg: m.Telemetry, data: bytes | None) -> list[Action]:
        self.telemetry.add(node, self.last_heard[node] - self.t0, msg)  # when it arrived
        return []

    def _on_bye(self, node: int, msg: m.Bye, data: bytes | None) -> list[Action]:
        self.byes[node] = msg
        return []

    # -- outputs -----------------------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.phase == "DONE"

    def outcome(self) -> tuple[str, int, str]:
        """(state, exit code, reason) of the job as it stands."""
        f = self.failure
        if f is None:
            return "SUCCEEDED", 0, self.ending or "every rank exited 0"
        return ("CANCELLED" if f.cancelled else "FAILED"), f.exit_code, f.reason

    def missing(self) -> list[int]:
        return [i for i in range(self.n) if i not in self.hellos]

    def bye_info(self) -> dict[str, Any]:
        procs = {"processes": self.procs.info()} if self.procs.results else {}
        cpu = {str(k): v.cpu_s for k, v in sorted(self.byes.items()) if v.cpu_s is not None}
        return {**procs, "agent_maxrss_kb": {str(k): v.maxrss_kb for k, v in sorted(self.byes.items())},
                **({"agent_cpu_s": cpu} if cpu else {}),
                "shm_removed": {str(k): v.shm_removed for k, v in sorted(self.byes.items()) if v.shm_removed}}


def _to_all(msg: m.ToAgent, nodes: list[int]) -> list[Action]:
    """One message object for every node: the driver sees it is the same and sends it once per tree edge."""
    return [Send(i, msg) for i in nodes]
