"""Pool agents on real sshd hosts: ``mnp pool start``, jobs launched ``--via pool`` (each node's agent forked by the
host's pool agent, no SSH session), their failures named by host, and nothing left after ``mnp pool stop``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, run_mnp
from sshnodes import SshNodes

pytestmark = pytest.mark.namespaces


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshNodes]:
    nodes = SshNodes(3, tmp_path_factory.mktemp("pool"), quiet=True).start()
    try:
        yield nodes
    finally:
        nodes.stop()


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _extra(hosts: SshNodes) -> list[str]:
    """Processes on the hosts other than each host's sshd and its keeper."""
    out = []
    for i in range(len(hosts.addresses)):
        for pid in hosts.pids(i):
            cmd = _cmd(pid)
            if cmd and "sshd" not in cmd.split(" ")[0] and not _comm(pid).startswith("mnp-keep"):
                out.append(f"host {i} pid {pid}: {cmd[:100]}")
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _pool_agents(hosts: SshNodes, i: int) -> list[int]:
    return [pid for pid in hosts.pids(i) if _comm(pid) == "mnp-pool"]


@pytest.fixture
def pool(hosts: SshNodes, tmp_path: Path, mnp_home: Path) -> Iterator[Path]:
    """A pool on the three hosts (their hostfile); stopped afterwards, and then nothing of it may be left."""
    hf = tmp_path / "hosts"
    hf.write_text("".join(f"{a}\n" for a in hosts.addresses))
    p = run_mnp(["pool", "start", *hosts.ssh_args(), "--hostfile", str(hf), "--json"], mnp_home, timeout=60)
    assert p.returncode == 0, p.stderr
    logs: list[Path] = []
    front = None
    try:
        assert [h["state"] for h in json.loads(p.stdout)["hosts"]] == ["started"] * 3
        logs = [_log_of(h) for h in _status(mnp_home).values()]  # each pool agent's stderr, while it runs
        front = _front(mnp_home)
        assert front is not None and front["jobs"] == 0 and "mnp.cli.front" in _cmd(front["pid"])
        yield hf
    finally:
        run_mnp(["pool", "stop"], mnp_home, timeout=60)
        assert front is None or not _cmd(front["pid"])  # the front went with the pool (it waited for it)
        deadline = time.monotonic() + 10
        while _extra(hosts) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _extra(hosts), _extra(hosts)
        assert not [log for log in logs if log.exists()]


def _log_of(status: dict[str, object]) -> Path:
    found = Path("/tmp").glob(f"mnp-pool-{os.getuid()}-{status['hostname']}-{status['pid']}-*.log")
    return max(found, key=lambda f: f.stat().st_mtime)  # (a pid of a host's namespace may have been used before)


CHAIN = ("import os\nfrom mpi4py import MPI\nc = MPI.COMM_WORLD\nagent = os.getppid()\n"
         "parent = open(f'/proc/{agent}/stat').read().rsplit(')', 1)[1].split()[1]\n"
         "print('CHAIN', c.Get_rank(), c.Get_size(), os.environ['MNP_NODE_INDEX'], agent, parent, flush=True)\n")


def _status(home: Path) -> dict[str, dict[str, object]]:
    p = run_mnp(["pool", "status", "--json"], home, timeout=30)
    return {h["host"]: h for h in json.loads(p.stdout)["hosts"]}


def _front(home: Path) -> dict[str, int] | None:
    """The pool's front (on this machine: it runs the jobs' mnp), as `mnp pool status` gives it."""
    p = run_mnp(["pool", "status", "--json"], home, timeout=30)
    front: dict[str, int] | None = json.loads(p.stdout)["front"]
    return front


def test_jobs_run_on_agents_forked_by_the_pool(hosts: SshNodes, pool: Path, tmp_path: Path, mnp_home: Path) -> None:
    """Two MPI jobs in a row: every rank's agent is a child of its host's pool agent (the pid `mnp pool status`
    gives), a new agent per job; the PMI barrier crosses the hosts; the pool agents stay up with no job agent."""
    script = tmp_path / "chain.py"
    script.write_text(CHAIN)
    before = _status(mnp_home)
    assert all(h["state"] == "up" and h["agents"] == 0 for h in before.values()), before
    agents = []
    front = _front(mnp_home)
    for _ in range(2):
        p = run_mnp(["run", "--hostfile", str(pool), "--via", "pool", "--transport", "tcp", sys.executable,
                     str(script)], mnp_home, timeout=120)
        assert p.returncode == 0, p.stderr
        rows = [line[line.index("CHAIN"):].split()[1:] for line in p.stdout.splitlines() if "CHAIN " in line]
        assert sorted(int(r[0]) for r in rows) == [0, 1, 2] and {r[1] for r in rows} == {"3"}, p.stdout
        for _rank, _, node, _agent, parent in rows:
            assert int(parent) == before[hosts.addresses[int(node)]]["pid"], (rows, before)
        agents.append({r[2]: r[3] for r in rows})
    assert agents[0] != agents[1]  # each job's own agents
    assert front is not None and _front(mnp_home) == {"pid": front["pid"], "jobs": front["jobs"] + 2}
    after = _status(mnp_home)
    assert all(h["state"] == "up" and h["agents"] == 0 and h["pid"] == before[n]["pid"] for n, h in after.items())


def test_a_rank_exit_code_and_a_killed_agent(hosts: SshNodes, pool: Path, mnp_home: Path) -> None:
    p = run_mnp(["run", "--hostfile", str(pool), "--via", "pool", "sh", "-c",
                 'if [ "$MNP_NODE_INDEX" = 1 ]; then exit 7; fi'], mnp_home, timeout=60)
    assert p.returncode == 7, p.stderr
    # node 2's rank kills its own agent: the pool agent says it ended, and the job names the node at once
    t0 = time.monotonic()
    p = run_mnp(["run", "--hostfile", str(pool), "--via", "pool", "sh", "-c",
                 'if [ "$MNP_NODE_INDEX" = 2 ]; then kill -9 $PPID; fi; sleep 30'], mnp_home, timeout=60)
    assert p.returncode != 0 and time.monotonic() - t0 < 15, p.stderr
    assert "node 2" in p.stderr.strip().splitlines()[-1] and "lost" in p.stderr, p.stderr
    assert all(h["state"] == "up" for h in _status(mnp_home).values())


def test_what_a_killed_agent_leaves_is_stopped_by_its_pool_agent(hosts: SshNodes, pool: Path,
                                                                  mnp_home: Path) -> None:
    """Every rank kills its agent at once, before the agent has told anyone the rank's group, and leaves a child
    of its own: the pool agent, its agents' subreaper and watchdog, inherits the rank, stops it and its child,
    says so in its log, and serves the next job. (Without the pool agent's orphans, checked: the sleeps stay on
    two hosts of three.)"""
    logs = {h["hostname"]: _log_of(h) for h in _status(mnp_home).values()}
    p = run_mnp(["run", "--hostfile", str(pool), "--via", "pool", "sh", "-c",
                 "sleep 101 & kill -9 $PPID; exec sleep 102"], mnp_home, timeout=60)
    assert p.returncode == 255 and "lost" in p.stderr, p.stderr

    def left() -> list[str]:
        return [line for line in _extra(hosts) if "sleep 10" in line]

    def said() -> list[str]:  # the pool agent's own clean-up line (a watchdog of the agent's would say "mnp watchdog")
        return [text for log in logs.values() if "mnp pool agent: agent" in (text := log.read_text())]

    # (a rank that had not yet killed its agent when the job was torn down is stopped cleanly by that agent)
    deadline = time.monotonic() + 10
    while (left() or not said()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left()
    assert said() and all("ended without closing: stopped" in t and "rank group(s)" in t for t in said()), said()
    p = run_mnp(["run", "--hostfile", str(pool), "--via", "pool", "true"], mnp_home, timeout=60)
    assert p.returncode == 0, p.stderr


def test_a_dead_agents_clean_up_spares_a_live_jobs_processes(hosts: SshNodes, pool: Path, mnp_home: Path) -> None:
    """Two jobs on one pool: the first leaves a detached process (an orphan of the pool agent, in a session of its
    own) and runs on; the second's ranks kill their agents. The clean-up after the second takes its own processes
    (marked with their agent's token) and none of the first job's."""
    proc = _sleeping(pool, mnp_home, "(setsid sleep 201 &); echo SLEEPING; exec sleep 202")
    try:
        def count(word: str) -> int:
            return sum(f": sleep {word} " in line + " " for line in _extra(hosts))

        deadline = time.monotonic() + 10
        while count("201") < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert count("201") == 3 and count("202") == 3
        p = run_mnp(["run", "--hostfile", str(pool), "--via", "pool", "sh", "-c",
                     "sleep 101 & kill -9 $PPID; exec sleep 102"], mnp_home, timeout=60)
        assert p.returncode == 255, p.stderr
        deadline = time.monotonic() + 10
        while (count("101") or count("102")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert count("101") == 0 and count("102") == 0
        time.sleep(1)  # (a clean-up that went too far would have had the time to)
        assert count("201") == 3 and count("202") == 3
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        subprocess.run(["pkill", "-x", "-f", "sleep 201"], check=False)


def _sleeping(pool: Path, mnp_home: Path, script: str = "echo SLEEPING; exec sleep 60") -> subprocess.Popen[str]:
    """`mnp run --via pool` of ``script`` (a minute's sleep) on the three hosts, returned once every rank said
    SLEEPING."""
    proc = subprocess.Popen([sys.executable, "-m", "mnp", "run", "--hostfile", str(pool), "--via", "pool", "sh", "-c",
                             script], env={**os.environ, "MNP_HOME": str(mnp_home)},
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    assert proc.stdout is not None
    seen = 0
    while seen < 3:
        line = proc.stdout.readline()
        assert line
        seen += "SLEEPING" in line
    return proc


def test_ctrl_c_stops_the_job_and_keeps_the_pool(hosts: SshNodes, pool: Path, mnp_home: Path) -> None:
    proc = _sleeping(pool, mnp_home)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130
    deadline = time.monotonic() + 10
    while any("sleep 60" in e for e in _extra(hosts)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any("sleep 60" in e for e in _extra(hosts)), _extra(hosts)
    assert all(h["state"] == "up" and h["agents"] == 0 for h in _status(mnp_home).values())


def test_a_dead_pool_agent_and_a_host_outside_the_pool_are_named(hosts: SshNodes, pool: Path, tmp_path: Path,
                                                                  mnp_home: Path) -> None:
    other = tmp_path / "other"
    other.write_text(f"{hosts.addresses[0]}\nnot-a-pool-host\n")
    p = run_mnp(["run", "--hostfile", str(other), "--via", "pool", "true"], mnp_home, timeout=30)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith("mnp: error: host not-a-pool-host: "), \
        p.stderr
    assert "Traceback" not in p.stderr
    for pid in _pool_agents(hosts, 1):
        os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    p = run_mnp(["run", "--hostfile", str(pool), "--via", "pool", "true"], mnp_home, timeout=30)
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode == 1 and f"{hosts.addresses[1]}: its pool agent" in last and "does not answer" in last, p.stderr
    assert time.monotonic() - t0 < 10
    st = run_mnp(["pool", "status"], mnp_home, timeout=30)
    assert st.returncode == 1 and f"{hosts.addresses[1]}  not answering" in st.stdout, st.stdout
    # started again: that host gets a new pool agent (which clears the killed one's empty log), the others stay
    again = run_mnp(["pool", "start", *hosts.ssh_args(), "--hostfile", str(pool), "--json"], mnp_home, timeout=60)
    assert [h["state"] for h in json.loads(again.stdout)["hosts"]] == ["running", "started", "running"], again.stderr
    assert run_mnp(["run", "--hostfile", str(pool), "--via", "pool", "true"], mnp_home, timeout=30).returncode == 0


def test_a_job_refused_after_its_agents_were_started_ahead_leaves_none(hosts: SshNodes, pool: Path, tmp_path: Path,
                                                                         mnp_home: Path) -> None:
    """The CLI sends each pool agent its Run before the coordinator has loaded and read the job; a job it then
    refuses (an MPI family that is not the program's) must take those agents with it before mnp exits."""
    script = tmp_path / "chain.py"
    script.write_text(CHAIN)
    before = _status(mnp_home)
    p = run_mnp(["run", "--hostfile", str(pool), "--via", "pool", "--mpi", "openmpi", sys.executable, str(script)],
                mnp_home, timeout=60)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith("mnp: error: mpi: openmpi"), p.stderr
    assert "Traceback" not in p.stderr
    after = _status(mnp_home)
    assert all(h["state"] == "up" and h["agents"] == 0 for h in after.values()), after
    assert all(after[n]["served"] == before[n]["served"] + 1 for n in after), (before, after)  # they were forked
    assert not [pid for i in range(3) for pid in hosts.pids(i) if _comm(pid) == "mnp-agent"]
    # the coordinator cannot even listen: one line naming the variable, exit 2, and no agent was asked for
    p = run_mnp(["run", "--hostfile", str(pool), "--via", "pool", "true"], mnp_home, timeout=60,
                env={"MNP_BIND_ADDRESS": "192.0.2.99"})
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith(
        "mnp: error: MNP_BIND_ADDRESS: the coordinator cannot listen on 192.0.2.99: "), p.stderr
    assert all(_status(mnp_home)[n]["served"] == after[n]["served"] for n in after)


def test_ctrl_c_or_sigterm_at_any_instant_of_the_start(hosts: SshNodes, pool: Path, mnp_home: Path) -> None:
    """The Runs go out before the coordinator has loaded: a signal while it loads, while it adopts them, or while
    the agents come up, still ends in the signal's status, one line, and no agent left on any host."""
    env = {**os.environ, "MNP_HOME": str(mnp_home)}
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        for after in (0.1, 0.2, 0.3, 0.45, 0.7):
            proc = subprocess.Popen([sys.executable, "-m", "mnp", "run", "--hostfile", str(pool), "--via", "pool",
                                     "sleep", "30"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            time.sleep(after)
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == code and "Traceback" not in err, (sig, after, proc.returncode, err)
            t0 = time.monotonic()
            while any(h["agents"] for h in _status(mnp_home).values()) and time.monotonic() - t0 < 10:
                time.sleep(0.2)
            assert not any(h["agents"] for h in _status(mnp_home).values()), (sig, after)


def _pids_cgroup() -> Path | None:
    root = Path("/sys/fs/cgroup/pids")
    return root if (root / "cgroup.procs").exists() else None


@contextlib.contextmanager
def _cannot_fork(hosts: SshNodes, which: tuple[int, ...]) -> Iterator[None]:
    """These hosts' pool agents in a pids cgroup at its limit: their forks fail (EAGAIN), so they refuse Runs."""
    root = _pids_cgroup()
    assert root is not None
    cg = root / f"mnp-test-{os.getpid()}"
    cg.mkdir()
    victims = [pid for i in which for pid in _pool_agents(hosts, i)]
    try:
        for pid in victims:
            (cg / "cgroup.procs").write_text(str(pid))
        (cg / "pids.max").write_text((cg / "pids.current").read_text().strip())
        yield
    finally:
        for pid in victims:
            (root / "cgroup.procs").write_text(str(pid))
        cg.rmdir()


@pytest.mark.skipif(_pids_cgroup() is None, reason="needs the cgroup v1 pids controller")
def test_pool_agents_that_cannot_fork_fail_the_job_in_one_line(hosts: SshNodes, pool: Path, mnp_home: Path) -> None:
    """Two hosts' pool agents refuse their node's Run (fork fails: a pids cgroup at its limit): the job fails with
    the first refusal, naming its host; the second counts as a node whose agent ended; nothing else is raised."""
    with _cannot_fork(hosts, (1, 2)):
        p = run_mnp(["run", "--hostfile", str(pool), "--via", "pool", "true"], mnp_home, timeout=60)
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode == 1 and last.startswith(f"mnp: error: {hosts.addresses[1]}: its pool agent refused node 1's "
                                                 "agent: run: could not fork the agent"), p.stderr
    assert "Traceback" not in p.stderr
    job = p.stderr.split("mnp: job ", 1)[1].split()[0]
    got = json.loads(run_mnp(["status", "--json", job], mnp_home, timeout=30).stdout)
    assert got["state"] == "FAILED" and got["exit_code"] == 1 and "refused node 1's agent" in got["reason"], got
    assert run_mnp(["run", "--hostfile", str(pool), "--via", "pool", "true"], mnp_home, timeout=60).returncode == 0


@pytest.mark.skipif(_pids_cgroup() is None, reason="needs the cgroup v1 pids controller")
def test_ctrl_c_while_loading_with_a_refusing_pool_agent(hosts: SshNodes, pool: Path, mnp_home: Path) -> None:
    """The refusal is first read by the teardown of a job cancelled before its bring-up: the job is still
    CANCELLED (130), its record finished, nothing raised. (A signal that comes after the refusal was read finds
    the job FAILED by it already: exit 1, the host named.)"""
    env = {**os.environ, "MNP_HOME": str(mnp_home)}
    with _cannot_fork(hosts, (1,)):
        for after in (0.05, 0.15, 0.3):
            proc = subprocess.Popen([sys.executable, "-m", "mnp", "run", "--hostfile", str(pool), "--via", "pool",
                                     "sleep", "30"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            time.sleep(after)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
            refused = f"mnp: error: {hosts.addresses[1]}: its pool agent refused node 1's agent"
            assert "Traceback" not in err and (proc.returncode == 130 or (proc.returncode == 1 and refused in err)), \
                (after, proc.returncode, err)
            if "mnp: job " in err:
                job = err.split("mnp: job ", 1)[1].split()[0]
                got = json.loads(run_mnp(["status", "--json", job], mnp_home, timeout=30).stdout)
                assert got["state"] == ("CANCELLED" if proc.returncode == 130 else "FAILED"), (after, got)
                assert "ended without finishing" not in got["reason"], got
    t0 = time.monotonic()
    while any(h["agents"] for h in _status(mnp_home).values()) and time.monotonic() - t0 < 10:
        time.sleep(0.2)
    assert not any(h["agents"] for h in _status(mnp_home).values())


def test_a_retried_job_reaches_the_pool_again(hosts: SshNodes, pool: Path, tmp_path: Path, mnp_home: Path) -> None:
    job = tmp_path / "retry.yaml"
    job.write_text('command: ["sh", "-c", "echo ATTEMPT $AWS_BATCH_JOB_ATTEMPT; [ $AWS_BATCH_JOB_ATTEMPT -ge 2 ]"]\n'
                   "ranks_per_node: 1\nretry: {attempts: 3}\n")
    before = _status(mnp_home)
    p = run_mnp(["launch", "--json", "--hostfile", str(pool), "--via", "pool", str(job)], mnp_home, timeout=120)
    assert p.returncode == 0 and "attempt 1 of 3 failed" in p.stderr, p.stderr
    assert json.loads(p.stdout)["state"] == "SUCCEEDED"
    after = _status(mnp_home)
    assert all(h["agents"] == 0 and h["served"] == before[n]["served"] + 2 for n, h in after.items()), after


def test_only_the_key_that_started_the_pool_is_heard(hosts: SshNodes, pool: Path, mnp_home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A client with another key pair (another user's, or a copy of the pool file without its secret) gets no
    answer: the CURVE handshake is refused. The pool's own key still works afterwards."""
    import zmq

    from mnp.cluster.pool import PoolClient, PoolStore
    from mnp.control import pool as p

    monkeypatch.setenv("MNP_HOME", str(mnp_home))
    store = PoolStore.load()
    pub, sec = zmq.curve_keypair()
    intruder = PoolClient(PoolStore(pub.decode(), sec.decode(), store.hosts), list(store.hosts))
    try:
        assert intruder.ask({n: p.Ping() for n in store.hosts}, lambda a: True, timeout=1.5) == {}
        # a run request from it would fork an agent: none appears
        intruder.send(hosts.addresses[0], p.Run(0, {"node": 0, "endpoint": "tcp://127.0.0.1:9"}))
        time.sleep(0.5)
    finally:
        intruder.close()
    own = PoolClient(store, list(store.hosts))
    try:
        got = own.ask({n: p.Ping() for n in store.hosts}, lambda a: isinstance(a, p.Ready))
    finally:
        own.close()
    assert all(isinstance(a, p.Ready) and a.agents == 0 for a in got.values()) and len(got) == 3, got


def test_an_idle_pool_agent_exits_by_itself(hosts: SshNodes, tmp_path: Path, mnp_home: Path) -> None:
    hf = tmp_path / "one"
    hf.write_text(f"{hosts.addresses[2]}\n")
    # --idle 2: the second start must find the pool agent still there after the first start's wait for its front
    # and one status call (about a second on this machine)
    p = run_mnp(["pool", "start", *hosts.ssh_args(), "--hostfile", str(hf), "--idle", "2"], mnp_home, timeout=60)
    assert p.returncode == 0 and "started" in p.stdout, p.stderr
    st = json.loads(run_mnp(["pool", "status", "--json"], mnp_home, timeout=30).stdout)
    [log] = [_log_of(h) for h in st["hosts"]]
    front = st["front"]
    assert front is not None
    again = run_mnp(["pool", "start", *hosts.ssh_args(), "--hostfile", str(hf), "--idle", "2"], mnp_home, timeout=60)
    assert again.returncode == 0 and "running" in again.stdout, again.stderr  # one agent per host: kept
    deadline = time.monotonic() + 10
    while _pool_agents(hosts, 2) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _pool_agents(hosts, 2) and not _extra(hosts)
    assert not log.exists()
    while _cmd(front["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _cmd(front["pid"])  # the front idles out with it
    p = run_mnp(["run", "--hostfile", str(hf), "--via", "pool", "true"], mnp_home, timeout=30)
    assert p.returncode == 1 and "does not answer" in p.stderr and "mnp pool start again" in p.stderr, p.stderr
    run_mnp(["pool", "stop"], mnp_home, timeout=30)


def test_via_pool_needs_hosts(mnp_home: Path) -> None:
    p = run_mnp(["run", "--via", "pool", "true"], mnp_home, timeout=30)
    assert p.returncode == 2 and "--via pool: name the pool's hosts" in p.stderr, p.stderr
    p = run_mnp(["pool", "start"], mnp_home, timeout=30)
    assert p.returncode == 2 and "--hostfile or --hosts" in p.stderr, p.stderr


def test_a_host_that_fails_leaves_no_pool_agent(hosts: SshNodes, tmp_path: Path, mnp_home: Path) -> None:
    hf = tmp_path / "some-down"
    hf.write_text(f"{hosts.addresses[0]}\n{hosts.addresses[1]}\n127.0.0.1 port=1\n")
    p = run_mnp(["pool", "start", *hosts.ssh_args(), "--hostfile", str(hf)], mnp_home, timeout=60)
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode == 1 and last.startswith("mnp: error: 127.0.0.1: ") and "Traceback" not in p.stderr, p.stderr
    time.sleep(0.5)
    assert not _extra(hosts), _extra(hosts)
    st = run_mnp(["pool", "status"], mnp_home, timeout=30)
    assert st.returncode == 0 and "no pool" in st.stdout, st.stdout


def test_a_killed_coordinator_stops_the_pools_agents_at_once(hosts: SshNodes, pool: Path, mnp_home: Path) -> None:
    """mnp killed outright (SIGKILL: no Ctrl-C handling, no teardown): its connection closes, and each forked
    agent takes that as the end of its session, as an SSH agent takes its stdin's end, instead of waiting for the
    coordinator's silence (15 s)."""
    proc = _sleeping(pool, mnp_home)
    proc.kill()
    proc.wait(10)
    t0 = time.monotonic()
    while any("sleep 60" in e for e in _extra(hosts)) and time.monotonic() - t0 < 10:
        time.sleep(0.1)
    assert not any("sleep 60" in e for e in _extra(hosts)) and time.monotonic() - t0 < 6, _extra(hosts)
    while any(h["agents"] for h in _status(mnp_home).values()) and time.monotonic() - t0 < 10:
        time.sleep(0.2)  # the agents end too (their goodbye to a coordinator that is gone waits at most 2 s)
    assert all(h["state"] == "up" and h["agents"] == 0 for h in _status(mnp_home).values())
