"""The coordinator's driver: one job from a validated spec to a final state, on the main node.

The decisions are made elsewhere -- node ranges and ranks per node in :mod:`mnp.plan`, the transport in
:mod:`mnp.fabric`, the launch back-end in :mod:`mnp.launch.backends`, everything that happens while the job runs in
the I/O-free :class:`~mnp.coordinator.engine.JobEngine` -- and this module wires them to the world: the records,
the cluster provider, the ZeroMQ channel, signals, the clock. Phases (each a state in :mod:`mnp.records`):

1. SUBMITTED -- node ranges are resolved against the node count (spec errors stop here, before any node exists).
2. RUNNABLE  -- the provider creates the nodes and starts one agent per node, each handed its CURVE keys on a pipe
   or stdin; the engine waits for every hello (with a deadline; progress as events).
3. STARTING  -- ranks are assigned, the transport is fixed, and every agent gets its ``Start``.
4. RUNNING   -- every agent started its ranks; barriers, output, exits, heartbeats go through the engine.
5. SUCCEEDED when every rank exited 0; CANCELLED when the user stopped it; otherwise FAILED with the first failure.

Teardown runs whatever happens (failure, Ctrl-C, SIGTERM, an exception): agents are told to shut down, then the
provider removes the nodes. Retries (AWS Batch's rules) are in :mod:`mnp.coordinator.attempts`.
"""

from __future__ import annotations

import os
import resource
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnp import config, interrupts
from mnp.cluster.base import Cluster, NodeInfo
from mnp.control import messages as m
from mnp.control.channel import CoordinatorChannel
from mnp.coordinator.actions import Action, ProcessDone, RankDone, Report, Send, ShowOutput, Stuck, Transition
from mnp.coordinator.alerts import Alerts
from mnp.coordinator.binding import Binding, decide_binding, node_cpus, one_machine
from mnp.coordinator.bringup import Control, Levels, handoff_settings, open_control
from mnp.coordinator.engine import EXIT_INTERRUPTED, Failure, JobEngine, Timing
from mnp.coordinator.events import EventSink, JobCreated, Note, Progress, ignore
from mnp.coordinator.output import OutputSink
from mnp.coordinator.planning import apply_remounts, make_cluster, node_work, shm_guess, short_nodes, startup_hint_of
from mnp.coordinator.stdin import StdinFeed
from mnp.coordinator.telemetry import telemetry_info
from mnp.coordinator.transit import EXIT_STUCK
from mnp.errors import MnpError, UsageError
from mnp.fabric.decide import FabricError, decide
from mnp.launch.backends import backend_for, check_layout, choose_mpi
from mnp.node.telemetry import telemetry_interval
from mnp.placement import resolve
from mnp.plan import JobPlan, NodeWork, assign_ranks, ranks_per_node, resolve_nodes
from mnp.records import Records, new_job_id

if TYPE_CHECKING:
    from mnp.cluster.hosts import HostSpec
    from mnp.cluster.sshopts import SshOptions
    from mnp.spec.model import JobSpec

__all__ = ["LaunchRequest", "JobResult", "run_attempt", "Interrupt"]


#: seconds between looks at the provider's list of ended agents (a node's loss is seen within this)
LOST_CHECK_S = 0.05


@dataclass
class LaunchRequest:
    spec: JobSpec
    spec_path: str | None = None
    nodes: int | None = None
    isolate: bool | None = None  # None: isolated when possible
    events: EventSink = ignore  # where the job reports (the CLI renders; default: nothing shown)
    echo: bool = True  # rank output as events (False: only kept in the job's logs)
    grace_s: float | None = None  # None: $MNP_GRACE, else mnp.config.DEFAULTS (so for the next three)
    heartbeat_s: float | None = None
    dead_s: float | None = None
    join_timeout_s: float | None = None
    cwd: str | None = None
    home: Path | None = None
    hosts: list[HostSpec] | None = None  # None: the embedded local cluster
    ssh: SshOptions | None = None
    cluster: Cluster | None = None  # a provider made by the caller (AWS Batch's main node)
    job_id: str | None = None  # default: a new id; AWS Batch's main node uses Batch's job id
    attempt: int = 1
    iface: str | None = None  # the interface MPI uses between nodes (default: probed)
    remount_shm: bool = False  # grow a node's /dev/shm (root) when it is smaller than the job needs
    explain: bool = False  # report the fabric decisions before the ranks start
    stdin: str = "none"  # which ranks read ``stdin_fd``: "0" (mpirun's habit), "all" (srun's), "none", or a rank
    stdin_fd: int | None = None  # what they read (the CLI: its own standard input)
    info: dict[str, Any] | None = None  # carried from earlier attempts
    depends_on: list[str] = field(default_factory=list)  # --depends-on, as named (besides the job's depends_on)
    notify: str | None = None  # a shell command given each stuck-in-transit alert as JSON on its stdin
    adopt: bool = False  # the record exists already (made PENDING, or by an array's parent): this process runs it
    telemetry_s: float | None = None  # seconds between samples on each node; None: $MNP_TELEMETRY_INTERVAL, else 1
    tree_width: int | None = None  # agents the coordinator and each relay hold at most (None: 32, mnp.control.tree)
    control: Control | None = None  # opened, its first agents started, ahead of the job (the first attempt's)

    def timing(self, timeout_s: float | None) -> Timing:
        return Timing(heartbeat_s=config.setting("heartbeat", self.heartbeat_s),
                      dead_s=config.setting("dead_after", self.dead_s), grace_s=config.setting("grace", self.grace_s),
                      join_timeout_s=config.setting("join_timeout", self.join_timeout_s), timeout_s=timeout_s)


@dataclass
class JobResult:
    job_id: str
    state: str
    exit_code: int
    reason: str
    wall_s: float
    nodes: list[dict[str, Any]]
    dir: str
    timings: dict[str, float] = field(default_factory=dict)
    retryable: bool = False  # a failure another attempt may fix (not a timeout, not an interruption)

    def to_json(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "state": self.state, "exit_code": self.exit_code, "reason": self.reason,
                "wall_s": round(self.wall_s, 3), "nodes": self.nodes}


class Interrupt:
    """SIGINT/SIGTERM/SIGHUP become a flag the event loop checks, so teardown always runs in order."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.old: dict[int, Any] = {}

    def __enter__(self) -> Interrupt:
        for s in interrupts.SIGNALS:
            try:
                self.old[s] = signal.signal(s, self._set)
            except ValueError:  # not the main thread
                pass
        if interrupts.pending:  # a signal before we were ready: the job is interrupted all the same
            self.signum = interrupts.pending[0]
        return self

    def _set(self, signum: int, _frame: Any) -> None:
        interrupts.pending.append(signum)  # (what waits without this object's loop, a pool's answers, sees it)
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting, teardown still runs
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)


class _Job:
    def __init__(self, req: LaunchRequest, records: Records, interrupt: Interrupt, alerts: Alerts) -> None:
        self.req = req
        self.alerts = alerts
        nodes = req.nodes or (len(req.hosts) if req.hosts else None)
        if req.hosts and req.nodes and req.nodes > len(req.hosts):
            raise UsageError(f"--nodes: {req.nodes} nodes asked for, but only {len(req.hosts)} host(s) given")
        self.hosts = req.hosts[: nodes or len(req.hosts)] if req.hosts else None
        self.spec = req.spec.with_nodes(nodes) if nodes else req.spec
        self.n = self.spec.nodes
        self.records = records
        self.interrupt = interrupt
        self.say = req.events
        self.job_id = req.job_id or new_job_id()
        self.info: dict[str, Any] = dict(req.info or {})
        self.t0 = time.monotonic()
        self.timings: dict[str, float] = {}
        self.engine = JobEngine(self.n, req.timing(self.spec.timeout), self.t0, transit=alerts.watch)
        self.chan: CoordinatorChannel | None = None
        self.levels: Levels | None = None  # who starts when (the control tree), from bring-up on
        self.next_lost_check = 0.0
        self.cluster: Cluster | None = None
        self.stdin: StdinFeed | None = None  # mnp's stdin while the ranks that read it run
        self.telemetry_s = req.telemetry_s if req.telemetry_s is not None else telemetry_interval()
        # the control plane the CLI opened ahead (a pool's agents, started while it loaded): adopted at once, so
        # whatever fails before bring-up, the teardown tells those agents to go
        self.control = req.control if req.attempt == 1 else None
        if self.control is not None:
            self.cluster = req.cluster  # the provider whose agents it started
            self._adopt(self.control)

    def run(self) -> JobResult:
        source = self.req.spec_path
        work = resolve_nodes(self.spec, source)
        self.mpi = choose_mpi(self.spec.mpi, self.spec.launcher, work[self.spec.main_node].command, source)
        check_layout(self.mpi, self.spec.map_by, source)
        if self.req.attempt == 1 and self.req.adopt:
            self.dir = self.records.adopt(self.job_id)
        elif self.req.attempt == 1:
            names = ", ".join(dict.fromkeys(p.name for w in work for p in w.processes))
            self.dir = self.records.create(self.job_id, self.spec.name, self.n, self.spec.command or work[0].command
                                           or [f"(processes: {names})"], source)
            self.say(JobCreated(self.job_id, self.spec.name, str(self.dir)))
        else:
            self.dir = Path(self.records.get(self.job_id).dir)
        logs = self.dir / "logs"
        if self.spec.retry and self.spec.retry.attempts > 1:  # each attempt keeps its own output
            logs = logs / f"attempt{self.req.attempt}"
            logs.mkdir(parents=True, exist_ok=True)
        self.sink = OutputSink(logs, self.say, self.req.echo)
        self.info["attempt"] = self.req.attempt
        nodes: list[NodeInfo] = []
        error: MnpError | None = None
        try:
            if self.interrupt.signum is not None:  # interrupted before anything was made
                raise KeyboardInterrupt
            if self.hosts is not None:  # hosts to reach (SSH): begun now, while the job is recorded and planned
                self.cluster = self._cluster()
                self.cluster.begin()
            if self.req.attempt == 1:  # later attempts were made RUNNABLE, with the reason, by the retry loop
                self.records.transition(self.job_id, "RUNNABLE")
            nodes = self._bring_up(work)
            if self.engine.phase == "PLANNING":
                plan, backend = self._plan(work, nodes)
                if self.interrupt.signum is not None:  # came while planning: the job is cancelled, not run
                    raise KeyboardInterrupt
                if self.engine.failure is None:
                    cwd = self.spec.workdir or self.req.cwd or os.getcwd()
                    starts = backend.starts(plan, cwd, self.req.stdin if self.req.stdin_fd is not None else "none")
                    # a launcher's remote commands name nodes by its hostfile's names first, then address, hostname
                    hosts = {h: p.index for p in plan.nodes for h in (p.address, p.hostname) if h}
                    hosts.update(backend.hosts)
                    self._act(self.engine.start(backend, starts, hosts, time.monotonic()))
                    if backend.stdin_targets and self.req.stdin_fd is not None:
                        assert self.chan is not None
                        self.stdin = StdinFeed(self.req.stdin_fd, self.chan.sock)
                    self._loop(lambda: not self.engine.done)
                    self.timings["ranks_done_s"] = time.monotonic() - self.t0
        except KeyboardInterrupt:
            self._cancel()
        except MnpError as e:  # recorded as the job's failure, then reported by the CLI
            if self.interrupt.signum is not None:  # a helper that died of the same Ctrl-C: the user stopped it
                self._cancel()
            else:
                self.engine.fail(Failure(e.exit_code, str(e), retryable=False))
                error = e
        finally:
            self._teardown()
        result = self._finish(nodes)
        if error is not None:
            self.records.transition(self.job_id, "FAILED", result.reason)
            raise error
        return result

    def _cancel(self) -> None:
        signum = self.interrupt.signum or signal.SIGINT
        code = EXIT_INTERRUPTED if signum == signal.SIGINT else 128 + signum
        self.engine.fail(Failure(code, f"interrupted by {signal.Signals(signum).name}", retryable=False,
                                 cancelled=True))

    # -- bring-up ----------------------------------------------------------------------------------------------
    def _bring_up(self, work: list[NodeWork]) -> list[NodeInfo]:
        cluster = self.cluster = self.cluster or self._cluster()
        if cluster.warning:
            self.say(Note("warning", cluster.warning))
        early, self.control = self.control, None
        if early is not None and early.nodes is not None:  # the CLI's: adopted already, its agents coming up
            nodes = early.nodes
        else:
            shm = shm_guess(work, self.mpi.family, self.spec.shm_size, getattr(cluster, "node_cpus", None))
            nodes = cluster.create(shm, lambda done, wanted: self.say(Progress("hosts ready", done, wanted)))
        self.say(Progress("hosts ready", len(nodes), self.n, final=True))
        self.records.update(self.job_id, nodes=[n.__dict__ for n in nodes])
        if early is None:
            self._adopt(open_control(cluster, self.job_id, self.n, self.req.tree_width,
                                     handoff_settings(self.req.heartbeat_s, self.req.dead_s, self.telemetry_s)))
        self.engine.why_missing = {i: why for i in range(self.n) if (why := cluster.join_hint(i))}
        self._loop(lambda: self.engine.phase == "JOINING", progress=True)
        self.say(Progress("nodes up", len(self.engine.hellos), self.n, final=True))
        self.timings["bringup_s"] = time.monotonic() - self.t0
        if self.engine.phase != "PLANNING":
            return nodes
        return cluster.joined({i: _hello_dict(h) for i, h in self.engine.hellos.items()})

    def _adopt(self, control: Control) -> None:
        self.tree, self.chan, self.levels = control.tree, control.chan, control.levels
        self.engine.tree = None if self.tree.star else self.tree

    def _cluster(self) -> Cluster:
        if self.req.cluster is not None:
            return self.req.cluster
        return make_cluster(self.job_id, self.n, self.hosts, self.req.ssh, self.req.isolate, self.say)

    # -- the event loop ----------------------------------------------------------------------------------------
    def _loop(self, cond: Any, progress: bool = False, poll_ms: int = 100) -> None:
        assert self.chan is not None and self.cluster is not None
        while cond():
            self.alerts.poll()
            if self.interrupt.signum is not None:
                self.engine.interrupt(self.interrupt.signum)
            now = time.monotonic()
            dead: dict[int, int] = {}
            if now >= self.next_lost_check:  # a waitpid per node: at 128 nodes, every pass made this the busiest part
                dead, self.next_lost_check = self.cluster.lost(), now + LOST_CHECK_S
            self._act(self.engine.on_tick(now, dead))
            if progress and self.engine.phase == "JOINING":
                missing = self.engine.missing()
                self.say(Progress("nodes up", self.n - len(missing), self.n, "waiting for node " +
                                  ", ".join(map(str, missing[:8])) + (", ..." if len(missing) > 8 else "")))
            if not cond():
                break
            wait_ms = 0 if self.chan.pending else poll_ms
            if self.stdin is not None and self.engine.phase == "RUNNING" and not self.chan.pending:
                data = self.stdin.read(poll_ms)  # waits for stdin or the socket
                if data is not None:
                    self._act(self.engine.on_stdin(data, eof=not data))
                wait_ms = 0  # (this iteration only: the loop spun when it stayed 0)
            got = self.chan.recv(wait_ms)
            for line in self.chan.refused:  # counted with the engine's own: at most MAX_REFUSED lines
                self._act(self.engine.refuse(line))
            self.chan.refused.clear()
            if got is not None:
                self._act(self.engine.on_message(got.node, got.msg, got.data, time.monotonic()))
                if isinstance(got.msg, m.Hello) and self.levels is not None and \
                        self.engine.hellos.get(got.node) is got.msg and \
                        (below := self.levels.below(got.node, got.msg.relay)):
                    self.cluster.start_agents(below)  # the next level dials the relay that just said hello
            if self.engine.telemetry.write_due(time.monotonic() - self.engine.t0):
                self._record_telemetry()  # while it runs, `mnp status` shows the peaks so far

    def _act(self, actions: list[Action]) -> None:
        assert self.chan is not None
        i = 0
        while i < len(actions):
            a = actions[i]
            i += 1
            if isinstance(a, Send):  # one message for many nodes (the same object): once per edge of the tree
                nodes = [a.node]
                while i < len(actions) and isinstance(b := actions[i], Send) and b.msg is a.msg and b.data is a.data:
                    nodes.append(b.node)
                    i += 1
                self.chan.send_many(nodes, a.msg, a.data)
            elif isinstance(a, ShowOutput):
                self.sink.write(a.node, a.rank, a.stream, a.data, a.process)
            elif isinstance(a, RankDone):
                self.sink.flush_rank(a.rank)
            elif isinstance(a, ProcessDone):
                self.sink.flush_process(a.node, a.name)
            elif isinstance(a, Transition):
                if a.state == "RUNNING":
                    self.timings["running_s"] = time.monotonic() - self.t0
                self.records.transition(self.job_id, a.state)
            elif isinstance(a, Stuck):
                alert = self.alerts.raise_alert(self.records, self.job_id, self.spec.name, a.state, a.waiting_for)
                if self.alerts.watch.on_stuck == "fail":
                    self.engine.fail(Failure(EXIT_STUCK, alert["line"], retryable=False))
            elif isinstance(a, Report):
                self.say(Note(a.kind, a.text))
                if a.kind == "security":
                    self.info.setdefault("refused", []).append(a.text)

    # -- planning ----------------------------------------------------------------------------------------------
    def _plan(self, work: list[NodeWork], nodes: list[NodeInfo]) -> tuple[JobPlan, Any]:
        hellos = self.engine.hellos
        work = node_work(work, hellos, self.hosts)
        cpus = [hellos[i].cpus for i in range(self.n)]
        hostnames = [hellos[i].hostname for i in range(self.n)]
        addresses = [n.address for n in nodes]
        facts = [dict(hellos[i].fabric) for i in range(self.n)]
        rpn = ranks_per_node(work, cpus)
        local_ns = self.hosts is None and self.req.cluster is None and addresses[0] != "127.0.0.1"
        owned = node_cpus(facts)
        # local nodes own CPUs by affinity only (so do nodes of one machine): an MPI's binding would step out of them
        shared = bool(getattr(self.cluster, "cpus_shared", False) or getattr(self.cluster, "node_cpus", None)
                      or one_machine(owned))
        fabric = decide(self.mpi.family, self.spec.transport, self.spec.shm_size, facts, hostnames,
                        [max(1, r) for r in rpn],  # a node of processes only is sized as one rank's
                        iface_override=self.req.iface, known_iface="eth0" if local_ns and self.n > 1 else None,
                        main_address=addresses[self.spec.main_node], cpus_shared=shared)
        if fabric.shm_problems and self.req.remount_shm:
            self._remount(fabric)
        policy = resolve(self.spec.bind_to, self.spec.map_by, self.mpi.family, sum(rpn))
        # ranks mnp binds are not pinned again by Intel MPI's library, its own way (the job's env still wins)
        unpin = {"I_MPI_PIN": "0"} if self.mpi.family == "impi" and policy.bind != "none" else {}
        plan = assign_ranks(self.job_id, work, cpus, hostnames, addresses, self.spec.main_node,
                            {**fabric.transport.env, **unpin}, attempt=self.req.attempt, over_nodes=policy.nodes)
        binding = decide_binding(self.spec.bind_to, self.spec.map_by, self.mpi.family, self.mpi.launcher, owned,
                                 [p.ranks for p in plan.nodes], shared)
        fabric.binding = binding.why
        self.info.update(fabric.to_info(), size=sum(rpn), binding=binding.to_info(),
                         mpi={"family": self.mpi.family, "why": self.mpi.why, "launcher": self.mpi.launcher})
        self.records.update(self.job_id, info=self.info)
        if self.req.explain:
            for line in fabric.explain().splitlines() + [f"binding {x}" for x in binding.lines]:
                self.say(Note("explain", line))
        for warning in fabric.warnings + ([binding.warning] if binding.warning else []):
            self.say(Note("warning", warning))  # thin /dev/shm margins, oversubscribed nodes, ranks sharing cores
        if fabric.shm_problems:
            more = f" (and {len(fabric.shm_problems) - 1} more node(s))" if len(fabric.shm_problems) > 1 else ""
            raise FabricError(fabric.shm_problems[0] + more)
        self.records.update(self.job_id, nodes=[{"index": p.index, "hostname": p.hostname, "address": p.address,
                                                 "ranks": p.ranks} for p in plan.nodes])
        return plan, self._backend(binding)

    def _backend(self, binding: Binding) -> Any:
        """The launch back-end, told how ranks are laid out and who binds them."""
        backend = backend_for(self.mpi.launcher, self.mpi.family, self.mpi.prefix)
        policy = binding.policy
        backend.over_nodes = policy.nodes
        backend.bind_cpus = binding.bind_cpus
        if binding.launcher_binds and self.mpi.launcher == "mpirun":
            # the MPI's launcher binds (nodes of different machines); Open MPI's default binds nothing on a node
            # with more ranks than cores: then nothing anywhere
            backend.mpi_policy = replace(policy, bind="none") if binding.placement.unbound_nodes else policy
            backend.overload = bool(binding.placement.wrapped)
        return backend

    def _remount(self, fabric: Any) -> None:
        """--remount-shm: ask the short nodes' agents (root) to grow /dev/shm, then look again."""
        assert self.chan is not None
        short = short_nodes(fabric)
        for i, need in short.items():
            self.chan.send(i, m.RemountShm(need))
        deadline = time.monotonic() + 15
        self._loop(lambda: not set(short) <= set(self.engine.remounted) and time.monotonic() < deadline
                   and self.engine.failure is None)
        apply_remounts(fabric, self.engine.remounted)

    # -- the end -----------------------------------------------------------------------------------------------
    def _teardown(self) -> None:
        if self.chan is not None:
            self._act(self.engine.shutdown(time.monotonic()))
            while not self.engine.done:
                try:
                    self._loop(lambda: not self.engine.done, poll_ms=50)
                except KeyboardInterrupt:
                    self._cancel()
                    break
                except MnpError as e:  # a provider's news that came only now (a refused node): the job's failure
                    self.engine.fail(Failure(e.exit_code, str(e), retryable=False))  # unless it has one already
            use = resource.getrusage(resource.RUSAGE_SELF)  # this process: the CLI and the coordinator
            self.info["control"] = {"width": self.tree.width if not self.tree.star else None,
                                    "depth": len(self.tree.levels()), "frames_in": self.chan.frames_in,
                                    "frames_out": self.chan.frames_out, "barriers": self.engine.barriers,
                                    "coordinator_cpu_s": round(use.ru_utime + use.ru_stime, 3)}
            self.chan.close()
        self.timings["shutdown_s"] = time.monotonic() - self.t0
        if self.cluster is not None:
            self.cluster.teardown()
        self.timings["teardown_s"] = time.monotonic() - self.t0
        self.sink.close()

    def _finish(self, nodes: list[NodeInfo]) -> JobResult:
        wall = time.monotonic() - self.t0
        state, code, reason = self.engine.outcome()
        f = self.engine.failure
        if state == "FAILED" and f is not None and f.node is not None and f.rank is not None:
            hint = startup_hint_of(self.sink.log_dir, f.node, f.rank, self.info, dict(self.spec.env))
            if hint:  # ranks that died in MPI start-up: say which interface and provider they were given
                reason = f"{reason} ({hint})"
        node_list = [{"index": n.index, "hostname": n.hostname, "address": n.address} for n in nodes]
        self.info.update(timings={k: round(v, 4) for k, v in self.timings.items()}, **self.engine.bye_info())
        if self.engine.refused_count:
            self.info["refused_count"] = self.engine.refused_count
        tel = self._record_telemetry(write=False)
        if tel is not None and tel.get("advice"):
            self.say(Note("advice", tel["advice"]))
        self.records.update(self.job_id, exit_code=code, wall_s=wall, info=self.info)
        return JobResult(self.job_id, state, code, reason, wall, node_list, str(self.dir), self.timings,
                         retryable=f is not None and f.retryable)

    def _record_telemetry(self, write: bool = True) -> dict[str, Any] | None:
        """``info.telemetry`` from what the nodes sent so far (None: telemetry off); ``write``: to the record now."""
        tel = telemetry_info(self.engine.telemetry, self.telemetry_s, self.cluster is not None and
                             self.cluster.shm_private, self.info.get("shm", {}))
        if tel is not None:
            self.info["telemetry"] = tel
            if write:
                self.records.update(self.job_id, info=self.info)
        return tel


def _hello_dict(h: m.Hello) -> dict[str, Any]:
    return {"hostname": h.hostname, "cpus": h.cpus, "address": h.address, "dialed": h.dialed, "command": h.command}


def run_attempt(req: LaunchRequest, records: Records, interrupt: Interrupt, alerts: Alerts) -> JobResult:
    """One attempt of a job, start to teardown."""
    return _Job(req, records, interrupt, alerts).run()
