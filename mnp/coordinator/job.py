"""The coordinator: runs one job from a validated spec to a final state, on the main node.

Phases (each a state in :mod:`mnp.records`):

1. SUBMITTED -- resolve node ranges against the node count (spec errors stop here, before any node exists).
2. RUNNABLE  -- the cluster provider creates the nodes and starts one agent per node, each handed its CURVE keys
   on stdin; the coordinator waits for every agent's hello (with a deadline and a progress line).
3. STARTING  -- ranks are assigned (ranks per node falls back to each node's CPU count), the environment contract
   and transport are fixed, and every agent gets its ``start``.
4. RUNNING   -- every agent started its ranks. The coordinator relays PMI barriers (allgather of puts), prints
   output, watches heartbeats, node loss and the job's timeout.
5. SUCCEEDED when every rank exited 0; otherwise FAILED with the first failure: every other rank on every node
   is stopped (SIGTERM, then SIGKILL after ``grace_s``), and the exit code is that rank's.

Teardown runs whatever happens (failure, Ctrl-C, SIGTERM, an exception): agents are told to shut down, then the
provider removes the nodes.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnp.cluster.base import Cluster, NodeInfo
from mnp.cluster.local import clean_stale, local_cluster
from mnp.control.channel import CoordinatorChannel
from mnp.errors import MnpError, SpecError, UsageError
from mnp.cluster.hosts import HostSpec
from mnp.coordinator.output import OutputSink, Progress
from mnp.plan import JobPlan, assign_ranks, resolve_nodes
from mnp.records import Records, new_job_id
from mnp.spec.model import JobSpec

if TYPE_CHECKING:
    from mnp.cluster.ssh import SshOptions
from mnp.launch.detect import detect_mpi
from mnp.launch.mpirun import mpirun_command
from mnp.fabric.decide import FabricError, decide
from mnp.fabric.shm import check_shm, shm_need

__all__ = ["LaunchRequest", "JobResult", "launch"]

EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130
EXIT_NODE_LOST = 255
LAUNCHER = -1  # the "rank" number of an mpirun/mpiexec process in the agents' bookkeeping


@dataclass
class LaunchRequest:
    spec: JobSpec
    spec_path: str | None = None
    nodes: int | None = None
    isolate: bool | None = None  # None: isolated when possible
    quiet_stdout: bool = False
    echo: bool = True  # show rank output (False: only keep it in the job's logs)
    grace_s: float = 5.0
    heartbeat_s: float = 1.0
    dead_s: float = 15.0
    join_timeout_s: float = 120.0
    cwd: str | None = None
    home: Path | None = None
    hosts: list[HostSpec] | None = None  # None: the embedded local cluster
    ssh: SshOptions | None = None
    cluster: Cluster | None = None  # a provider made by the caller (AWS Batch's main node)
    job_id: str | None = None  # default: a new id; AWS Batch's main node uses Batch's job id
    attempt: int = 1
    iface: str | None = None  # the interface MPI uses between nodes (default: probed)
    remount_shm: bool = False  # grow a node's /dev/shm (root) when it is smaller than the job needs
    explain: bool = False  # print the fabric decisions before the ranks start
    info: dict[str, Any] | None = None  # carried from earlier attempts


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


@dataclass
class _Failure:
    exit_code: int
    reason: str
    node: int | None = None
    rank: int | None = None
    retryable: bool = True


class _Interrupt:
    """SIGINT/SIGTERM become a flag the event loop checks, so teardown always runs in order."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.old: dict[int, Any] = {}

    def __enter__(self) -> _Interrupt:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            try:
                self.old[s] = signal.signal(s, self._set)
            except ValueError:  # not the main thread
                pass
        return self

    def _set(self, signum: int, _frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting, teardown still runs
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)


def _say(msg: str) -> None:
    sys.stderr.write(f"mnp: {msg}\n")
    sys.stderr.flush()


class _Job:
    def __init__(self, req: LaunchRequest, records: Records, interrupt: _Interrupt) -> None:
        self.req = req
        nodes = req.nodes or (len(req.hosts) if req.hosts else None)
        if req.hosts and req.nodes and req.nodes > len(req.hosts):
            raise UsageError(f"--nodes: {req.nodes} nodes asked for, but only {len(req.hosts)} host(s) given")
        self.hosts = req.hosts[: nodes or len(req.hosts)] if req.hosts else None
        self.spec = req.spec.with_nodes(nodes) if nodes else req.spec
        self.n = self.spec.nodes
        self.records = records
        self.interrupt = interrupt
        self.job_id = req.job_id or new_job_id()
        self.info: dict[str, Any] = dict(req.info or {})
        self.failure: _Failure | None = None
        self.t0 = time.monotonic()
        self.timings: dict[str, float] = {}
        self.agent_rss_kb: dict[int, int | None] = {}
        self.deadline = self.t0 + self.spec.timeout if self.spec.timeout else None

    # -- phases ------------------------------------------------------------------------------------------------
    def run(self) -> JobResult:
        source = self.req.spec_path
        work = resolve_nodes(self.spec, source)
        found = detect_mpi(work[self.spec.main_node].command)
        self.family = self.spec.mpi if self.spec.mpi != "auto" else found.family
        self.family_why = found.why if self.spec.mpi == "auto" else "set in the job (mpi: %s)" % self.spec.mpi
        self.mpi_prefix = found.prefix if found.family == self.family else None
        self.launcher = self.spec.launcher if self.spec.launcher != "auto" else \
            ("mpirun" if self.family == "openmpi" else "pmi")
        if self.family == "openmpi" and self.launcher == "pmi":
            raise SpecError("launcher", "Open MPI cannot be started by PMI-1 (its ranks would each be a singleton); "
                            "use 'mpirun' or 'auto'", source)
        if self.req.attempt == 1:
            self.dir = self.records.create(self.job_id, self.spec.name, self.n, self.spec.command or work[0].command,
                                           source)
        else:
            self.dir = Path(self.records.get(self.job_id).dir)
        logs = self.dir / "logs"
        if self.spec.retry and self.spec.retry.attempts > 1:  # each attempt keeps its own output
            logs = logs / f"attempt{self.req.attempt}"
            logs.mkdir(parents=True, exist_ok=True)
        self.sink = OutputSink(logs, self.req.quiet_stdout, self.req.echo)
        self.info["attempt"] = self.req.attempt
        cluster: Cluster | None = None
        chan: CoordinatorChannel | None = None
        nodes: list[NodeInfo] = []
        error: MnpError | None = None
        try:
            if self.req.attempt == 1:  # later attempts were made RUNNABLE, with the reason, by launch()
                self.records.transition(self.job_id, "RUNNABLE")
            cluster = self._cluster()
            if cluster.warning:
                _say(f"warning: {cluster.warning}")
            local_rpn = max(w.ranks_per_node or len(os.sched_getaffinity(0)) for w in work)
            shm = shm_need(local_rpn, self.family if self.family in ("mpich", "openmpi") else "mpich",
                           self.spec.shm_size)
            progress = Progress("hosts ready")
            nodes = cluster.create(shm, progress.update)
            progress.done(len(nodes), self.n)
            self.records.update(self.job_id, nodes=[n.__dict__ for n in nodes])
            keys = cluster.keys()
            chan = CoordinatorChannel(keys, cluster.control_address, cluster.control_port)
            handoffs = {i: {**keys.agent_handoff(i), "endpoint": chan.endpoint, "node": i, "job_id": self.job_id,
                            "heartbeat_s": self.req.heartbeat_s, "dead_s": self.req.dead_s,
                            "report_ifaces": cluster.probe_ifaces} for i in range(self.n)}
            cluster.start_agents(handoffs)
            hellos = self._join(chan, cluster)
            nodes = cluster.joined(hellos)  # providers whose nodes dial in learn names and addresses here
            self.timings["bringup_s"] = time.monotonic() - self.t0
            if self.failure is None:
                self.records.transition(self.job_id, "STARTING")
                plan = self._plan(work, nodes, hellos, chan)
                self._execute(chan, cluster, plan)
        except KeyboardInterrupt:
            self._fail(_Failure(EXIT_INTERRUPTED, "interrupted", retryable=False))
        except MnpError as e:  # recorded as the job's failure, then reported by the CLI
            self._fail(_Failure(e.exit_code, str(e), retryable=False))
            error = e
        finally:
            if chan is not None:
                self._shutdown(chan, cluster)
            self.timings["shutdown_s"] = time.monotonic() - self.t0
            if cluster is not None:
                cluster.teardown()
            self.timings["teardown_s"] = time.monotonic() - self.t0
            self.sink.close()
        result = self._finish(nodes)
        if error is not None:
            self.records.transition(self.job_id, "FAILED", result.reason)
            raise error
        return result

    def _cluster(self) -> Cluster:
        if self.req.cluster is not None:
            return self.req.cluster
        if self.hosts is not None:
            from mnp.cluster.ssh import SshCluster, SshOptions  # only SSH jobs pay for it

            return SshCluster(self.job_id, self.hosts, self.req.ssh or SshOptions())
        for short in clean_stale():
            _say(f"removed leftovers of an earlier local cluster ({short}) whose coordinator is gone")
        return local_cluster(self.job_id, self.n, self.req.isolate)

    def _join(self, chan: CoordinatorChannel, cluster: Cluster) -> dict[int, dict[str, Any]]:
        hellos: dict[int, dict[str, Any]] = {}
        progress = Progress("nodes up")
        deadline = time.monotonic() + self.req.join_timeout_s
        last_ping = 0.0
        while len(hellos) < self.n:
            if time.monotonic() - last_ping >= self.req.heartbeat_s:  # those who came wait for the others
                for i in hellos:
                    chan.send(i, "ping")
                last_ping = time.monotonic()
            missing = [i for i in range(self.n) if i not in hellos]
            progress.update(len(hellos), self.n, detail="waiting for node " + ", ".join(map(str, missing[:8])) +
                            (", ..." if len(missing) > 8 else ""))
            if self._check_stop():
                return hellos
            lost = {k: v for k, v in cluster.lost().items() if k not in hellos}
            if lost:
                node, status = next(iter(lost.items()))
                self._fail(_Failure(EXIT_NODE_LOST, f"node {node} failed to start its agent (exit status {status})",
                                    node))
                return hellos
            if time.monotonic() > deadline:
                missing = [i for i in range(self.n) if i not in hellos]
                self._fail(_Failure(EXIT_NODE_LOST, f"node(s) {', '.join(map(str, missing))} did not join within "
                                    f"{self.req.join_timeout_s:g}s ({len(hellos)}/{self.n} joined: "
                                    f"{', '.join(map(str, sorted(hellos))) or 'none'})"))
                return hellos
            got = chan.recv(200)
            if got and got[1]["t"] == "hello" and 0 <= got[0] < self.n:
                hellos[got[0]] = got[1]
        progress.done(len(hellos), self.n)
        return hellos

    def _plan(self, work: list[Any], nodes: list[NodeInfo], hellos: dict[int, dict[str, Any]],
              chan: CoordinatorChannel) -> JobPlan:
        # Nodes that brought their own command (AWS Batch: the node range's container.command) run it.
        work = [replace(w, command=hellos[w.index]["command"]) if hellos[w.index].get("command") else w
                for w in work]
        if self.hosts is not None:  # a host's slots stand in for ranks_per_node where the job leaves it open
            work = [w if w.ranks_per_node or not self.hosts[w.index].slots else
                    replace(w, ranks_per_node=self.hosts[w.index].slots) for w in work]
        cpus = [hellos[i]["cpus"] for i in range(self.n)]
        hostnames = [hellos[i]["hostname"] for i in range(self.n)]
        addresses = [n.address for n in nodes]
        rpn = [w.ranks_per_node or max(1, cpus[w.index]) for w in work]
        local_ns = self.hosts is None and self.req.cluster is None and addresses[0] != "127.0.0.1"
        fabric = decide(self.family, self.spec.transport, self.spec.shm_size,
                        [hellos[i].get("fabric", {}) for i in range(self.n)], hostnames, rpn,
                        iface_override=self.req.iface, known_iface="eth0" if local_ns and self.n > 1 else None,
                        main_address=addresses[self.spec.main_node])
        if fabric.shm_problems and self.req.remount_shm:
            self._remount(chan, fabric)
        self.info.update(fabric.to_info(), size=sum(rpn),
                         mpi={"family": self.family, "why": self.family_why, "launcher": self.launcher})
        self.records.update(self.job_id, info=self.info)
        if self.req.explain:
            sys.stderr.write("".join(f"mnp: {line}\n" for line in fabric.explain().splitlines()))
        if fabric.shm_problems:
            more = f" (and {len(fabric.shm_problems) - 1} more node(s))" if len(fabric.shm_problems) > 1 else ""
            raise FabricError(fabric.shm_problems[0] + more)
        plan = assign_ranks(self.job_id, work, cpus, hostnames, addresses, self.spec.main_node,
                            fabric.transport.env, attempt=self.req.attempt)
        self.records.update(self.job_id, nodes=[{"index": p.index, "hostname": p.hostname, "address": p.address,
                                                 "ranks": p.ranks} for p in plan.nodes])
        return plan

    def _remount(self, chan: CoordinatorChannel, fabric: Any) -> None:
        """--remount-shm: ask the short nodes' agents (root) to grow /dev/shm, then look again."""
        short = {i: s for i, s in fabric.shm.items() if s["problem"]}
        for i, s in short.items():
            chan.send(i, "remount_shm", bytes=s["need"])
        deadline = time.monotonic() + 15
        while short and time.monotonic() < deadline:
            got = chan.recv(100)
            if got and got[1]["t"] == "shm_remounted" and got[0] in short:
                i, msg = got[0], got[1]
                s = fabric.shm[i]
                s.update(total=msg["total"], free=msg["free"])
                s["problem"] = check_shm(f"node {i}", msg["total"], msg["free"], s["need"])
                if s["problem"] and msg.get("error"):
                    s["problem"] += f" (remount failed: {msg['error']})"
                elif not s["problem"]:
                    s["remounted"] = True
                del short[i]

    def _start(self, chan: CoordinatorChannel, plan: JobPlan) -> set[int]:
        """Send every node its part; returns the ranks (or the launcher, as rank 0) to wait for."""
        cwd = self.spec.workdir or self.req.cwd or os.getcwd()
        common: dict[str, Any] = {"kvsname": plan.kvsname, "size": plan.size, "mapping": plan.mapping, "cwd": cwd}
        if self.launcher == "pmi":
            for node in plan.nodes:
                chan.send(node.index, "start", **common, env=node.env,
                          ranks=[{"rank": r, "local_rank": i, "argv": node.command} for i, r in enumerate(node.ranks)])
            return set(range(plan.size))
        lc = mpirun_command(self.family, plan, self.mpi_prefix)
        for node in plan.nodes:
            if node.index == plan.main_node:
                chan.send(node.index, "start", **common, env={**node.env, **lc.env}, files=lc.files, rsh=True,
                          io_ranks=node.ranks, ranks=[{"rank": LAUNCHER, "local_rank": 0, "argv": lc.argv,
                                                       "pmi": False}])
            else:  # its processes are the launcher's daemons, started on request (exec)
                chan.send(node.index, "start", **common, env=node.env, io_ranks=node.ranks, ranks=[])
        return {LAUNCHER}

    def _node_by_host(self, host: str, plan: JobPlan) -> int | None:
        for n in plan.nodes:
            if host in (n.address, n.hostname):
                return n.index
        return None

    def _execute(self, chan: CoordinatorChannel, cluster: Cluster, plan: JobPlan) -> None:
        running = self._start(chan, plan)
        execs: dict[str, tuple[int, int]] = {}  # remote-exec id -> (asking node, running node)
        started: set[int] = set()  # nodes whose agent started its ranks
        barrier: dict[int, dict[str, str]] = {}
        last_heard = {i: time.monotonic() for i in range(self.n)}
        last_ping = 0.0
        stop_deadline: float | None = None
        while running:
            now = time.monotonic()
            if now - last_ping >= self.req.heartbeat_s:
                for i in range(self.n):
                    chan.send(i, "ping")
                last_ping = now
            if self.failure is None:
                if self._check_stop():
                    pass
                elif lost := cluster.lost():
                    node, status = next(iter(lost.items()))
                    self._fail(_Failure(EXIT_NODE_LOST, f"node {node} lost: its agent exited (status {status})",
                                        node))
                elif silent := [i for i, t in last_heard.items() if now - t > self.req.dead_s]:
                    self._fail(_Failure(EXIT_NODE_LOST, f"node {silent[0]} lost: no heartbeat for "
                                        f"{self.req.dead_s:.0f}s", silent[0]))
            if self.failure is not None:  # the first failure stops every rank on every node, once
                if stop_deadline is None:
                    for i in range(self.n):
                        chan.send(i, "kill", grace=self.req.grace_s)
                    stop_deadline = now + self.req.grace_s + 5
                elif now > stop_deadline:
                    break  # nodes that do not answer are torn down by the provider
            got = chan.recv(100)
            if got is None:
                continue
            node_i, msg, data = got
            last_heard[node_i] = time.monotonic()
            kind = msg["t"]
            if kind == "output" and data is not None:
                self.sink.write(node_i, msg["rank"], msg["stream"], data)
            elif kind == "rexec":
                target = self._node_by_host(msg["host"], plan)
                if target is None:
                    chan.send(node_i, "rexec_output", f"mnp-rsh: {msg['host']} is not a node of this job\n".encode(),
                              id=msg["id"], stream="stderr")
                    chan.send(node_i, "rexec_exit", id=msg["id"], code=255)
                else:
                    execs[msg["id"]] = (node_i, target)
                    chan.send(target, "exec", id=msg["id"], command=msg["command"])
            elif kind in ("exec_output", "exec_exit") and msg["id"] in execs:
                origin = execs[msg["id"]][0]
                if kind == "exec_output":
                    chan.send(origin, "rexec_output", data, id=msg["id"], stream=msg["stream"])
                else:
                    chan.send(origin, "rexec_exit", id=msg["id"], code=msg["code"])
            elif kind == "rexec_kill" and msg["id"] in execs:
                chan.send(execs[msg["id"]][1], "exec_kill", id=msg["id"])
            elif kind == "exit":
                rank, code = msg["rank"], msg["code"]
                running.discard(rank)
                self.sink.flush_rank(rank)
                if code != 0 and self.failure is None:
                    how = f"killed by {msg['signal']}" if msg.get("signal") else f"exited with code {code}"
                    extra = f": {msg['reason']}" if msg.get("reason") else ""
                    who = f"node {node_i} rank {rank}" if self.launcher == "pmi" else \
                        f"node {node_i} launcher ({'mpirun' if self.family == 'openmpi' else 'mpiexec'})"
                    self._fail(_Failure(code, f"{who} {how}{extra}", node_i, rank))
            elif kind == "barrier":
                barrier[node_i] = msg["puts"]
                if len(barrier) == self.n:
                    kvs: dict[str, str] = {}
                    for puts in barrier.values():
                        kvs.update(puts)
                    barrier = {}
                    for i in range(self.n):
                        chan.send(i, "barrier_done", kvs=kvs)
            elif kind == "started":
                started.add(node_i)
                if len(started) == self.n:
                    self.timings["running_s"] = time.monotonic() - self.t0
                    self.records.transition(self.job_id, "RUNNING")
            elif kind == "abort" and self.failure is None:
                code = msg["code"] or 1
                text = f": {msg['message']}" if msg.get("message") else ""
                self._fail(_Failure(code, f"node {node_i} rank {msg['rank']} called MPI_Abort({code}){text}",
                                    node_i, msg["rank"]))
        self.timings["ranks_done_s"] = time.monotonic() - self.t0

    def _check_stop(self) -> bool:
        if self.interrupt.signum is not None:
            name = signal.Signals(self.interrupt.signum).name
            self._fail(_Failure(EXIT_INTERRUPTED if self.interrupt.signum == signal.SIGINT
                                else 128 + self.interrupt.signum, f"interrupted by {name}", retryable=False))
            return True
        if self.deadline is not None and time.monotonic() > self.deadline:
            self._fail(_Failure(EXIT_TIMEOUT, f"timeout: the job ran past {self.spec.timeout:g}s", retryable=False))
            return True
        return False

    def _fail(self, f: _Failure) -> None:
        if self.failure is None:
            self.failure = f

    def _shutdown(self, chan: CoordinatorChannel, cluster: Cluster | None) -> None:
        for i in range(self.n):
            chan.send(i, "shutdown")
        bye: set[int] = set()
        deadline = time.monotonic() + 3
        while len(bye) < self.n and time.monotonic() < deadline:
            if cluster is not None and len(set(cluster.lost()) | bye) >= self.n:
                break
            got = chan.recv(50)
            if got and got[1]["t"] == "bye":
                bye.add(got[0])
                self.agent_rss_kb[got[0]] = got[1].get("maxrss_kb")
                if got[1].get("shm_removed"):
                    self.info.setdefault("shm_removed", {})[str(got[0])] = got[1]["shm_removed"]
            elif got and got[1]["t"] == "output" and got[2] is not None:
                self.sink.write(got[0], got[1]["rank"], got[1]["stream"], got[2])
        chan.close()

    def _finish(self, nodes: list[NodeInfo]) -> JobResult:
        wall = time.monotonic() - self.t0
        f = self.failure
        state = "FAILED" if f else "SUCCEEDED"
        code = f.exit_code if f else 0
        reason = f.reason if f else "every rank exited 0"
        node_list = [{"index": n.index, "hostname": n.hostname, "address": n.address} for n in nodes]
        self.info.update(timings={k: round(v, 4) for k, v in self.timings.items()},
                         agent_maxrss_kb={str(k): v for k, v in sorted(self.agent_rss_kb.items())})
        self.records.update(self.job_id, exit_code=code, wall_s=wall, info=self.info)
        return JobResult(self.job_id, state, code, reason, wall, node_list, str(self.dir), self.timings,
                         retryable=f is not None and f.retryable)


def _strategy(spec: JobSpec) -> Any:
    from mnp.spec.batchdef import RetryRule, RetryStrategy

    if spec.retry is None:
        return RetryStrategy()
    return RetryStrategy(spec.retry.attempts, tuple(
        RetryRule(r.action.upper(), r.on_exit_code, r.on_reason, r.on_status_reason)  # type: ignore[arg-type]
        for r in spec.retry.evaluate_on_exit))


def launch(req: LaunchRequest) -> JobResult:
    """Run one job to its end, attempt after attempt as its ``retry`` allows (AWS Batch's rules: a timeout or an
    interruption is not retried; no matching rule means retry). Spec and usage problems raise before any node is
    created."""
    if req.nodes is not None and req.nodes < 1:
        raise UsageError("--nodes: must be at least 1")
    records = Records(req.home)
    for job_id in records.reap_orphans():
        _say(f"job {job_id} was left unfinished by a coordinator that is gone: marked FAILED")
    strategy = _strategy(req.spec)
    history: list[dict[str, Any]] = []
    try:
        with _Interrupt() as interrupt:
            while True:
                result = _Job(req, records, interrupt).run()
                if result.state == "SUCCEEDED" or not result.retryable or \
                        not strategy.should_retry(result.exit_code, result.reason, req.attempt):
                    records.transition(result.job_id, result.state, result.reason)
                    return result
                history.append({"attempt": req.attempt, "exit_code": result.exit_code, "reason": result.reason})
                _say(f"attempt {req.attempt} of {strategy.attempts} failed ({result.reason}); trying again")
                records.transition(result.job_id, "RUNNABLE", f"attempt {req.attempt + 1}: after {result.reason}")
                req = replace(req, attempt=req.attempt + 1, job_id=result.job_id,
                              info={"attempts": history}, cluster=None if req.cluster is None else req.cluster)
    finally:
        records.close()
