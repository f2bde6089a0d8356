"""Faults in the middle of an SSH job, on real sshd hosts: a rank never outlives its host's agent.

A job of MPI ranks that init (so MPICH puts its segment in each host's /dev/shm), meet at a barrier and then sleep
runs on two hosts. Mid-job, on host 1, either the agent is killed with SIGKILL or the SSH session's sshd is. Within
the heartbeat timeout every rank process of host 1 must be gone and no file of the job may stay in its /dev/shm;
mnp must exit non-zero.

The SIGKILLed agent is :mod:`mnp.node.watchdog`'s case (issue #8): without the agent starting a ``Watchdog`` and
telling it its rank groups and kvsname, host 1's ranks ran on until the host went away. The killed sshd is first the
agent's own case (it sees the end of its stdin and stops its ranks); the watchdog covers it when the agent dies of
the lost session instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, write_job
from sshnodes import SshNodes

HEARTBEAT_TIMEOUT_S = 15.0  # the coordinator's and agents' dead_s default (LaunchRequest.dead_s)

pytestmark = pytest.mark.namespaces

SPINNER = """
import os, time
from mpi4py import MPI
comm = MPI.COMM_WORLD
comm.Barrier()
print(f"SPIN-READY {comm.Get_rank()} {os.getpid()}", flush=True)
time.sleep(300)
"""


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[SshNodes]:
    (tmp_path / "ssh").mkdir()
    nodes = SshNodes(2, tmp_path / "ssh", up=[0, 1]).start()
    try:
        yield nodes
    finally:
        nodes.stop()  # the hosts' PID namespaces and /dev/shm mounts end with them, whatever the test left


class Run:
    """``mnp launch`` of the spinner on both hosts, in the background, its output collected by a thread."""

    def __init__(self, hosts: SshNodes, tmp: Path, home: Path) -> None:
        self.hosts = hosts
        self.script = tmp / "spinner.py"
        self.script.write_text(SPINNER)
        job = write_job(tmp / "spin.yaml", name="spin", command=[sys.executable, str(self.script)], mpi="mpich",
                        transport="tcp", ranks_per_node=2)
        self.shm_before = [set(os.listdir(hosts.shm_dir(i))) for i in range(2)]
        env = {**os.environ, "MNP_HOME": str(home)}
        env.pop("MNP_DEBUG", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mnp", "launch", *hosts.ssh_args(), "--grace", "1", "--hosts",
             ",".join(hosts.addresses), str(job)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=env, cwd=ROOT)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, ranks: int = 4, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while sum("SPIN-READY" in line for line in self.lines) < ranks:
            assert self.proc.poll() is None, f"mnp ended before the ranks were up:\n{self.output()}"
            assert time.monotonic() < deadline, f"the ranks did not come up:\n{self.output()}"
            time.sleep(0.1)

    def procs(self, node: int, needle: str) -> list[int]:
        """Live (not zombie) processes of host ``node`` whose command line holds ``needle``."""
        found = []
        for pid in self.hosts.pids(node):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if needle in cmd and state != "Z":
                found.append(pid)
        return found

    def ranks(self, node: int) -> list[int]:
        return self.procs(node, str(self.script))

    def job_shm(self, node: int) -> list[str]:
        """Files that appeared in host ``node``'s /dev/shm since the job started."""
        return sorted(set(os.listdir(self.hosts.shm_dir(node))) - self.shm_before[node])

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for node in range(2):
            for pid in self.ranks(node) + self.procs(node, "mnp.node."):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            for name in self.job_shm(node):
                (self.hosts.shm_dir(node) / name).unlink(missing_ok=True)
        self.reader.join(5)


@pytest.fixture
def run(hosts: SshNodes, tmp_path: Path, mnp_home: Path) -> Iterator[Run]:
    r = Run(hosts, tmp_path, mnp_home)
    try:
        yield r
    finally:
        r.cleanup()


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _fault_and_check(run: Run, kill: str) -> None:
    run.wait_ready()
    ranks = run.ranks(1)
    assert len(ranks) == 2, f"host 1 should run 2 ranks: {ranks}"
    assert any(name.startswith("mpich_shm_") for name in run.job_shm(1)), \
        f"MPICH made no segment in host 1's /dev/shm: {run.job_shm(1)}"  # else the /dev/shm check proves nothing
    agents = {_ppid(r) for r in ranks}  # the ranks' parent is the host's agent
    assert len(agents) == 1, agents
    agent = agents.pop()
    assert "mnp" in Path(f"/proc/{agent}/cmdline").read_text(), "the ranks' parent is not an mnp agent"
    victim = agent if kill == "agent" else _ppid(agent)  # the agent's parent: the SSH session's sshd
    if kill == "sshd":
        assert Path(f"/proc/{victim}/comm").read_text().strip() == "sshd"
    t0 = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    deadline = t0 + HEARTBEAT_TIMEOUT_S
    while (run.ranks(1) or run.job_shm(1)) and time.monotonic() < deadline:
        time.sleep(0.2)
    took = time.monotonic() - t0
    assert run.ranks(1) == [], f"host 1's ranks still run {took:.0f}s after its {kill} died:\n{run.output()}"
    assert run.job_shm(1) == [], f"the job's files stay in host 1's /dev/shm: {run.job_shm(1)}"
    try:
        code = run.proc.wait(60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"mnp did not end after host 1's {kill} died:\n{run.output()}")
    assert code != 0, run.output()
    assert run.ranks(0) == [] and run.job_shm(0) == [], "the other host was not cleaned up"


def test_agent_killed_mid_job(run: Run) -> None:
    _fault_and_check(run, "agent")


def test_session_sshd_killed_mid_job(run: Run) -> None:
    _fault_and_check(run, "sshd")
