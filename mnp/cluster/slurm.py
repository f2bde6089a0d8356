"""Slurm allocations: one agent per node started by ``srun``, the way Slurm starts anything on its nodes.

Inside an allocation (``SLURM_JOB_ID`` set; nodes from ``SLURM_JOB_NODELIST``, :func:`mnp.cluster.hosts.slurm_hosts`)
the agents are the tasks of one job step::

    srun --nodes=N --ntasks=N --ntasks-per-node=1 --nodelist=<the job's nodes> --overlap --kill-on-bad-exit=0
         --wait=0 --mpi=none --cpu-bind=none --label --input=all --job-name=mnp-<job id>
         <python> -m mnp.cluster.srun_task

``--overlap`` lets the step share the CPUs of whatever else runs in the allocation (the batch script itself);
``--mpi=none`` and ``--cpu-bind=none`` keep a site's ``MpiDefault`` and task binding away from the agent, which
starts the ranks itself (mnp's PMI-1, or Open MPI's/Hydra's launcher through mnp, as over SSH), so the ranks may
use every CPU of the node.

**Keys: nothing secret crosses srun.** srun has one stdin for the whole step, broadcast to every task (``--input``
can pick one task, not give each its own). So each task makes its own CURVE key pair on its node and prints the
public half (:mod:`mnp.cluster.srun_task`); srun labels the line with the task's id, which is how the coordinator
knows whose key it is (only that task's stdout carries that label). :meth:`SlurmCluster.create` waits for every
node's key (``hosts ready k/N``); the coordinator then admits exactly those keys, and the handoffs broadcast on
stdin hold only public facts (endpoint, the coordinator's public key, node index). No secret goes to argv, the
environment, a file, or even the step's stdin. The stdin then stays open, as an SSH channel does: when the
coordinator closes it (or dies), every agent stops its ranks.

**Failures.** A node that cannot start its agent (no Python there, mnp not installed, another Python version,
srun unable to make the step) is one line naming it before anything starts, like the SSH preflight's. srun reports
every task that ends badly (``srun: error: node3: task 3: Exited with exit code 1``); :meth:`SlurmCluster.lost`
reports dead agents in the order srun named them, the first one alone first. The step is *not*
``--kill-on-bad-exit=1`` (a site's ``KillOnBadExit`` and ``WaitTime`` are overridden): Slurm would then signal every
process of the step, the other nodes' ranks included, and the job would fail as "node 0 rank 0 killed by SIGTERM
(exit 143)" instead of "node 1 lost" (exit 255), as it did in the test that kills an agent. mnp stops the other
nodes itself, closes the step's stdin at teardown, and cancels the step (``scancel``) if it has not ended 10 s
later, so no agent outlives the job either way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

import hostlist

from mnp.cluster.base import Cluster, NodeInfo
from mnp.cluster.hosts import HostSpec
from mnp.cluster.srun_task import HANDOFF_TAG, KEY_TAG
from mnp.errors import ClusterError, HostError, UsageError

__all__ = ["SlurmCluster", "srun_argv"]

_LABELLED = re.compile(r"^\s*(\d+): ?(.*)$")
_TASK_END = re.compile(r"^srun: error: (\S+): tasks? ([0-9,-]+): (.*)$")
_SIGNALS = {"Killed": signal.SIGKILL, "Terminated": signal.SIGTERM, "Hangup": signal.SIGHUP,
            "Interrupt": signal.SIGINT, "Segmentation fault": signal.SIGSEGV, "Aborted": signal.SIGABRT,
            "Bus error": signal.SIGBUS}
_QUIET = ("lacks support for cpu binding", "_step_signal", "Force Terminated", "Job step aborted")
STOP_S = 10.0  # after stdin closes: agents stop their ranks (2 s grace) and exit; srun follows


def _status(text: str) -> int:
    """srun's words for how a task ended -> an exit status (128+N for a signal)."""
    m = re.match(r"Exited with exit code (\d+)", text)
    if m:
        return int(m.group(1))
    sig = _SIGNALS.get(text.split(" (")[0].strip())
    return 128 + sig if sig else 255


def srun_argv(job_id: str, names: list[str], python: str) -> list[str]:
    n = len(names)
    return ["srun", f"--nodes={n}", f"--ntasks={n}", "--ntasks-per-node=1",
            f"--nodelist={hostlist.collect_hostlist(names)}", "--overlap", "--kill-on-bad-exit=0", "--wait=0",
            "--mpi=none", "--cpu-bind=none", "--label", "--input=all", f"--job-name=mnp-{job_id}",
            python, "-m", "mnp.cluster.srun_task"]


def _resolve(name: str) -> str | None:
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return None
    addrs = [str(i[4][0]) for i in infos if not str(i[4][0]).startswith("127.")]
    return addrs[0] if addrs else None


def _slurm_address(name: str, env: dict[str, str]) -> str | None:
    """The address Slurm itself reaches node ``name`` at (its NodeAddr), for names this host cannot resolve."""
    try:
        out = subprocess.run(["scontrol", "-o", "show", "node", name], capture_output=True, text=True, timeout=20,
                             env=env, start_new_session=True).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    fields = dict(w.split("=", 1) for w in out.split() if "=" in w)
    addr = fields.get("NodeAddr")
    return (_resolve(addr) or addr) if addr else None


class SlurmCluster(Cluster):
    """The nodes of the Slurm allocation this process runs in, reached through ``srun``."""

    # the control tree: every task waits for its own handoff line on the step's stdin, so each level's lines are
    # written once its relays said hello (they bind any free port; only public facts cross srun)

    def __init__(self, job_id: str, hosts: list[HostSpec], remote_python: str | None = None,
                 start_timeout: float = 60.0, environ: dict[str, str] | None = None) -> None:
        super().__init__(job_id, len(hosts))
        self.names = [h.name for h in hosts]
        self.python = remote_python or sys.executable
        self.start_timeout = start_timeout
        self.environ = dict(os.environ if environ is None else environ)
        self.srun: subprocess.Popen[bytes] | None = None
        self.step: str | None = None
        self._cond = threading.Condition()
        self._keys: dict[int, str] = {}  # node -> the CURVE public key its task made
        self._task_node: dict[int, int] = {}  # srun task id -> node index
        self._dead: dict[int, int] = {}  # node -> exit status, in the order srun reported them
        self._said: dict[int, list[str]] = {}  # node -> its task's last stderr lines (for error messages)
        self._problem: HostError | None = None  # a node whose key cannot be taken
        self._srun_said: list[str] = []
        self._shown = 0  # how many of _dead lost() has revealed
        self._stopping = False
        self._threads: list[threading.Thread] = []

    # -- bring-up: start the step, gather every node's key --------------------------------------------------------
    def create(self, shm_bytes: int | None, progress: Callable[[int, int], None] | None = None) -> list[NodeInfo]:
        if not self.environ.get("SLURM_JOB_ID", "").strip():
            raise UsageError("--via srun: not inside a Slurm allocation (SLURM_JOB_ID is not set); use salloc or "
                             "sbatch, or --via ssh")
        if shutil.which("srun", path=self.environ.get("PATH")) is None:
            raise ClusterError("srun is not on PATH: cannot start agents inside the Slurm allocation (or --via ssh)")
        self.control_address = self.environ.get("MNP_BIND_ADDRESS") or self._control_address()
        env = {k: v for k, v in self.environ.items() if k != "MNP_JOB_SECRET"}
        self.srun = subprocess.Popen(srun_argv(self.job_id, self.names, self.python), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
        assert self.srun.stdout is not None and self.srun.stderr is not None
        for target, stream in ((self._read_stdout, self.srun.stdout), (self._read_stderr, self.srun.stderr)):
            t = threading.Thread(target=target, args=(stream,), daemon=True)
            t.start()
            self._threads.append(t)
        self._gather_keys(progress)
        self.nodes = [NodeInfo(i, name, _resolve(name) or "") for i, name in enumerate(self.names)]
        return self.nodes

    def _gather_keys(self, progress: Callable[[int, int], None] | None) -> None:
        deadline = time.monotonic() + self.start_timeout
        shown = -1
        with self._cond:
            while len(self._keys) < self.num_nodes:
                if self._problem is not None:
                    raise self._problem
                if self._dead:  # a task ended before it said its key: its agent could not start
                    node, status = next(iter(self._dead.items()))
                    until = time.monotonic() + 1.0  # srun may report the end before relaying the task's last words
                    while node not in self._said and time.monotonic() < until:
                        self._cond.wait(0.05)
                    raise self._start_problem(node, status)
                assert self.srun is not None
                if self.srun.poll() is not None:
                    self._cond.wait(0.5)  # its last words
                    raise self._problem or ClusterError(f"srun failed (exit {self.srun.returncode}): "
                                                        + (" / ".join(self._srun_said[-2:]) or "no output"))
                if time.monotonic() > deadline:
                    missing = [self.names[i] for i in range(self.num_nodes) if i not in self._keys]
                    raise ClusterError(f"{len(missing)} node(s) did not start an agent through srun within "
                                       f"{self.start_timeout:g}s ({len(self._keys)}/{self.num_nodes} ready; waiting "
                                       f"for {', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''})")
                if progress and len(self._keys) != shown:
                    shown = len(self._keys)
                    progress(shown, self.num_nodes)
                self._cond.wait(0.1)

    def _control_address(self) -> str:
        """Where agents reach the coordinator: this host's address on the way to another node of the job."""
        me = socket.gethostname().split(".")[0]
        others = [n for n in self.names if n.split(".")[0] != me]
        if not others:  # the only node is this one
            return _resolve(me) or "127.0.0.1"
        target = others[0]
        addr = _resolve(target) or _slurm_address(target, self.environ)
        if addr is None:
            raise HostError(target, "does not resolve here and Slurm names no address for it (set MNP_BIND_ADDRESS "
                            "to the address the nodes reach this host at)")
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # no packet is sent
                s.connect((addr, 9))
                return str(s.getsockname()[0])
        except OSError as e:
            raise HostError(target, f"no route from here to {addr}: {e.strerror or e}") from None

    def keys(self) -> Any:
        """The coordinator's fresh key pair, and for each node the public key its task made (its secret never left
        the node)."""
        import zmq

        from mnp.control.channel import JobKeys

        public, secret = zmq.curve_keypair()
        return JobKeys(public, secret, {i: (self._keys[i].encode(), b"") for i in range(self.num_nodes)})

    def start_agents(self, handoffs: dict[int, dict[str, Any]]) -> None:
        """Broadcast each node's handoff (public facts only) on the step's stdin; its task picks its own."""
        lines = []
        for i, handoff in handoffs.items():
            public = {k: v for k, v in handoff.items() if k != "secret"}
            lines.append(f"{HANDOFF_TAG} {self.names[i]} {json.dumps(public, separators=(',', ':'))}\n")
        self._send("".join(lines).encode())

    def _send(self, data: bytes) -> None:
        assert self.srun is not None and self.srun.stdin is not None
        try:
            self.srun.stdin.write(data)
            self.srun.stdin.flush()
        except (OSError, ValueError):
            pass  # srun is gone: lost() reports it

    # -- srun's output -----------------------------------------------------------------------------------------
    def _node_of(self, name: str) -> int | None:
        short = name.split(".")[0]
        return next((i for i, n in enumerate(self.names) if n == name or n.split(".")[0] == short), None)

    def _read_stdout(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            m = _LABELLED.match(line)
            words = m.group(2).split() if m else []
            if m and len(words) == 5 and words[0] == KEY_TAG:
                self._key(int(m.group(1)), *words[1:])
            elif m:
                self._relay(int(m.group(1)), m.group(2))
            elif line:
                sys.stderr.write(f"mnp: srun: {line}\n")

    def _key(self, task: int, name: str, version: str, step: str, public: str) -> None:
        node = self._node_of(name)
        here = f"{sys.version_info[0]}.{sys.version_info[1]}"
        with self._cond:
            self.step = self.step or step
            if node is None or node in self._keys:
                self._problem = self._problem or HostError(name, "srun started a second task there, or one on a node "
                                                           "that is not the job's")
            elif version != here:
                self._problem = self._problem or HostError(
                    self.names[node], f"Python version mismatch: {version} at {self.python} there, {here} here "
                    "(use the same version, or --remote-python)")
            else:
                self._task_node[task] = node
                self._keys[node] = public
            self._cond.notify_all()

    def _relay(self, task: int, text: str) -> None:
        node = self._task_node.get(task)
        if node is None:  # a task that failed before it said who it is: slurmstepd names its node
            m = re.match(r"slurmstepd-(\S+?): ", text)
            node = self._node_of(m.group(1)) if m else None
        if node is not None:
            lines = self._said.setdefault(node, [])
            lines.append(text)
            del lines[:-5]
        if not self._stopping:
            sys.stderr.write(f"[node {node if node is not None else '?'} agent] {text}\n")

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            m = _LABELLED.match(line)
            end = _TASK_END.match(line)
            if m:
                self._relay(int(m.group(1)), m.group(2))
            elif end and (node := self._node_of(end.group(1))) is not None:
                with self._cond:
                    self._dead.setdefault(node, _status(end.group(3)))
                    self._cond.notify_all()
            else:
                with self._cond:
                    self._srun_said = [*self._srun_said[-4:], line]
                    self._cond.notify_all()
                if line and not self._stopping and not any(q in line for q in _QUIET):
                    sys.stderr.write(f"mnp: {line}\n")

    def _start_problem(self, node: int, status: int) -> HostError:
        """Why node ``node``'s task ended before its agent ran, in one line."""
        said = " ".join(self._said.get(node, [])[-3:])
        name = self.names[node]
        if "execve()" in said and "No such file" in said:
            return HostError(name, f"Python not found at {self.python} (set --remote-python)")
        if "No module named 'mnp'" in said or "No module named mnp" in said:
            return HostError(name, f"mnp is not installed for {self.python} there")
        last = self._said.get(node, ["(no output)"])[-1]
        return HostError(name, f"its srun task ended before the agent started (exit {status}): {last}")

    # -- running -----------------------------------------------------------------------------------------------
    def lost(self) -> dict[int, int]:
        """Nodes whose agent ended, with its status: srun's reports, then (when srun is gone) every other node. The
        first node srun reported is reported alone first (the engine names the lowest index of those it gets at
        once), so a job is failed by the node that failed first, not by one that ended after it."""
        with self._cond:
            rc = self.srun.poll() if self.srun is not None else None
            if rc is not None:
                for t in self._threads:  # srun has ended: its last words are in
                    t.join(1)
                for i in range(self.num_nodes):
                    self._dead.setdefault(i, rc if rc >= 0 else 128 - rc)
            dead = list(self._dead.items())
            self._shown = 1 if self._shown == 0 and dead else len(dead)
            return dict(dead[: self._shown])

    def joined(self, hellos: dict[int, dict[str, Any]]) -> list[NodeInfo]:
        self.nodes = [NodeInfo(n.index, hellos.get(n.index, {}).get("hostname") or n.hostname,
                               hellos.get(n.index, {}).get("address") or n.address) for n in self.nodes]
        return self.nodes

    def wait_agents(self, timeout: float) -> None:
        if self.srun is not None:
            try:
                self.srun.wait(timeout)
            except subprocess.TimeoutExpired:
                pass

    def teardown(self) -> None:
        """Close the step's stdin (every agent stops its ranks and exits) and wait for srun; a step still there
        after :data:`STOP_S` is cancelled (``scancel``) and srun ended."""
        self._stopping = True
        p = self.srun
        if p is None:
            return
        try:
            if p.stdin is not None:
                try:
                    p.stdin.close()
                except OSError:
                    pass
            p.wait(STOP_S)
        except subprocess.TimeoutExpired:
            if self.step:
                subprocess.run(["scancel", "--quiet", self.step], capture_output=True, timeout=30, check=False,
                               env=self.environ, start_new_session=True)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            raise ClusterError(f"the agents' srun step ({self.step or 'no step id'}) did not end within "
                               f"{STOP_S:g}s after its stdin closed; it was cancelled") from None
        finally:
            for t in self._threads:
                t.join(2)

