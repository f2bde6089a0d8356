"""End-to-end launches on the embedded local cluster: real namespaces, real MPICH, real ZeroMQ."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import JOBS, ROOT, leftovers, run_mnp, write_job

pytestmark = pytest.mark.namespaces


def _env_lines(stdout: str) -> list[dict]:
    out = []
    for line in stdout.splitlines():
        if "ENV {" in line:
            prefix, payload = line.split("ENV ", 1)
            rec = json.loads(payload)
            rec["prefix"] = prefix.strip()
            out.append(rec)
    return out


def test_hello_4_nodes_2_ranks_env_contract(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "env.yaml", name="envdump", nodes=4, ranks_per_node=2, main_node=1,
                    command=[sys.executable, str(JOBS / "envdump.py")], env={"USER_VAR": "from-job"},
                    mpi="mpich", transport="tcp", timeout=120)
    p = run_mnp(["launch", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr
    recs = _env_lines(p.stdout)
    assert len(recs) == 8
    assert sorted(r["rank"] for r in recs) == list(range(8))
    assert {r["size"] for r in recs} == {8} and {r["sum"] for r in recs} == {8}
    hosts = {r["host"] for r in recs}
    assert len(hosts) == 4
    job_ids = {r["env"]["MNP_JOB_ID"] for r in recs}
    assert len(job_ids) == 1
    job_id = job_ids.pop()
    main_addrs = {r["env"]["MNP_MAIN_NODE_ADDR"] for r in recs}
    assert len(main_addrs) == 1
    main_addr = main_addrs.pop()
    by_node: dict[int, list[dict]] = {}
    for r in recs:
        e = r["env"]
        node = int(e["MNP_NODE_INDEX"])
        by_node.setdefault(node, []).append(r)
        assert r["prefix"] == f"[node {node} rank {r['rank']}]"
        assert r["rank"] // 2 == node  # block mapping
        assert e["MNP_LOCAL_RANK"] == str(r["rank"] % 2)
        assert e["MNP_NUM_NODES"] == e["AWS_BATCH_JOB_NUM_NODES"] == "4"
        assert e["MNP_MAIN_NODE_INDEX"] == e["AWS_BATCH_JOB_MAIN_NODE_INDEX"] == "1"
        assert e["AWS_BATCH_JOB_NODE_INDEX"] == str(node)
        assert e["AWS_BATCH_JOB_ID"] == f"{job_id}#{node}"
        assert e["MNP_ATTEMPT"] == e["AWS_BATCH_JOB_ATTEMPT"] == "1"
        assert e["PMI_RANK"] == str(r["rank"]) and e["PMI_SIZE"] == "8"
        assert e["USER_VAR"] == "from-job"
        assert e["MPIR_CVAR_CH4_NETMOD"] == "ofi" and e["FI_PROVIDER"] == "tcp"
        # Batch sets the main node's address on children only
        if node == 1:
            assert e["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] is None
        else:
            assert e["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] == main_addr
    assert sorted(by_node) == [0, 1, 2, 3]
    assert len({by_node[n][0]["host"] for n in by_node}) == 4

    st = run_mnp(["status", job_id, "--json"], mnp_home)
    rec = json.loads(st.stdout)
    assert rec["state"] == "SUCCEEDED" and rec["exit_code"] == 0
    assert [t["state"] for t in rec["transitions"]] == ["SUBMITTED", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"]
    assert [n["index"] for n in rec["nodes"]] == [0, 1, 2, 3]
    assert rec["nodes"][1]["address"] == main_addr
    logs = run_mnp(["logs", job_id, "--node", "2", "--rank", "5"], mnp_home)
    assert logs.returncode == 0
    assert logs.stdout.startswith("[node 2 rank 5] ENV {")
    assert len(logs.stdout.splitlines()) == 1
    listing = run_mnp(["list"], mnp_home)
    assert job_id in listing.stdout and "SUCCEEDED" in listing.stdout


def test_json_output_and_default_ranks_per_node(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "hello.yaml", name="hello", command=f"{sys.executable} {ROOT / 'examples/hello.py'}")
    p = run_mnp(["launch", "--nodes", "2", "--json", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)  # stdout holds only the JSON object
    assert set(result) == {"job_id", "state", "exit_code", "reason", "wall_s", "nodes"}
    assert result["state"] == "SUCCEEDED" and result["exit_code"] == 0 and result["wall_s"] > 0
    assert [n["index"] for n in result["nodes"]] == [0, 1]
    assert len({n["address"] for n in result["nodes"]}) == 2
    import os

    # each local node owns its share of this machine's CPUs (one each when there are no more than nodes), and the
    # default ranks per node is that node's CPU count
    per_node = max(1, len(os.sched_getaffinity(0)) // 2)
    assert f"{2 * per_node} ranks on 2 hosts" in p.stderr  # rank output went to stderr


def _latency(tmp_path: Path, home: Path, nodes: int, ranks_per_node: int) -> float:
    job = write_job(tmp_path / f"pp{nodes}.yaml", name="pingpong", nodes=nodes, ranks_per_node=ranks_per_node,
                    command=[sys.executable, str(JOBS / "pingpong.py")], mpi="mpich", transport="tcp")
    p = run_mnp(["launch", str(job)], home)
    assert p.returncode == 0, p.stderr
    return float(p.stdout.split("LATENCY_US")[1].split()[0])


def test_isolation_is_real_inter_node_slower_than_intra(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    # Same transport setting both times; within one node MPICH uses shared memory, across isolated nodes it
    # cannot (own IPC, PID and mount namespaces) and must go through TCP over the veth pair.
    intra = min(_latency(tmp_path, mnp_home, 1, 2) for _ in range(2))
    inter = min(_latency(tmp_path, mnp_home, 2, 1) for _ in range(2))
    assert inter > 1.5 * intra, f"inter-node {inter} us vs intra-node {intra} us: nodes share memory?"


def test_failing_rank_sets_exit_code_and_stops_everything(tmp_path: Path, mnp_home: Path,
                                                          no_leftovers: None) -> None:
    job = write_job(tmp_path / "fail.yaml", name="fail", nodes=4, ranks_per_node=2,
                    command=[sys.executable, str(JOBS / "fail_rank.py")], env={"FAIL_RANK": 3, "FAIL_CODE": 3},
                    transport="tcp", timeout=100)
    t0 = time.monotonic()
    p = run_mnp(["launch", "--grace", "2", str(job)], mnp_home)
    took = time.monotonic() - t0
    assert p.returncode == 3, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert "node 1 rank 3 exited with code 3" in last and "FAILED" in last
    assert "Traceback" not in p.stderr
    assert took < 60  # the other ranks (sleeping 120 s) were stopped
    assert "[node 1 rank 3] rank 3 failing on purpose" in p.stdout


def test_mpi_abort_is_reported(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "abort.yaml", nodes=2, ranks_per_node=1, transport="tcp",
                    command=[sys.executable, "-c", "from mpi4py import MPI; import time\n"
                             "MPI.COMM_WORLD.Abort(7) if MPI.COMM_WORLD.rank == 1 else time.sleep(100)"])
    p = run_mnp(["launch", "--grace", "1", str(job)], mnp_home)
    assert p.returncode == 7, p.stderr
    assert "node 1 rank 1" in p.stderr and "MPI_Abort(7)" in p.stderr


def test_missing_command_is_127_and_named(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "nocmd.yaml", nodes=2, ranks_per_node=1, command="/nonexistent/prog --x")
    p = run_mnp(["launch", str(job)], mnp_home)
    assert p.returncode == 127
    assert "cannot start '/nonexistent/prog'" in p.stderr


def test_timeout_stops_job(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "slow.yaml", nodes=2, ranks_per_node=1, timeout=2, command="sleep 60")
    t0 = time.monotonic()
    p = run_mnp(["launch", "--grace", "1", "--json", str(job)], mnp_home)
    assert p.returncode == 124
    assert time.monotonic() - t0 < 30
    res = json.loads(p.stdout)
    assert res["state"] == "FAILED" and "timeout" in res["reason"]


def test_ctrl_c_tears_down(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    import os

    job = write_job(tmp_path / "long.yaml", nodes=3, ranks_per_node=1, command="sleep 100")
    proc = subprocess.Popen([sys.executable, "-m", "mnp", "launch", "--grace", "1", str(job)],
                            env={**os.environ, "MNP_HOME": str(mnp_home)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _our_sleepers(mnp_home):
        time.sleep(0.2)
    assert _our_sleepers(mnp_home), "the job's ranks never started"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err


def _our_sleepers(home: Path) -> list[int]:
    """This test's ranks (`sleep 100` with this test's MNP_HOME), not any other process that sleeps."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline", "environ"]):
        try:
            if (p.info["cmdline"] or [])[:2] == ["sleep", "100"] and \
                    (p.info["environ"] or {}).get("MNP_HOME") == str(home):
                found.append(p.info["pid"])
        except psutil.Error:
            continue
    return found


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "silent"])
def test_node_crash_fails_job(tmp_path: Path, mnp_home: Path, no_leftovers: None, how: int) -> None:
    import os

    import psutil

    job = write_job(tmp_path / "crash.yaml", nodes=3, ranks_per_node=1, command="sleep 100")
    proc = subprocess.Popen([sys.executable, "-m", "mnp", "launch", str(job)],
                            env={**os.environ, "MNP_HOME": str(mnp_home), "MNP_DEAD_AFTER": "3"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        for p in psutil.process_iter(["cmdline", "environ"]):
            try:
                env = p.info["environ"] or {}
                if p.info["cmdline"][:2] == ["sleep", "100"] and env.get("MNP_NODE_INDEX") == "2" and \
                        env.get("MNP_HOME") == str(mnp_home):
                    victim = p.parent()  # the node's agent: its PID namespace's init
            except (TypeError, psutil.Error):
                continue
        time.sleep(0.2)
    assert victim is not None
    os.kill(victim.pid, how)
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=60)
    took = time.monotonic() - t0
    assert proc.returncode == 255, err
    assert "node 2 lost" in err.strip().splitlines()[-1]
    # a lost node's ranks are dead by definition: the job ends once the others stopped theirs (they go at SIGTERM),
    # not after a grace period for the lost ones; a silent node is lost after MNP_DEAD_AFTER (3 s here)
    assert took < (3.0 if how == signal.SIGKILL else 3.0 + 2.0 + 1.0), took


def test_stale_cluster_is_removed_at_next_start(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    # A crashed run's leftovers: a namespace and a bridge named like ours, with no live owner.
    subprocess.run(["ip", "netns", "add", "mnp-dead00-0"], check=True)
    subprocess.run(["ip", "link", "add", "mnpb-dead00", "type", "bridge"], check=True)
    try:
        job = write_job(tmp_path / "ok.yaml", nodes=1, ranks_per_node=1, command="true")
        p = run_mnp(["launch", str(job)], mnp_home)
        assert p.returncode == 0, p.stderr
        assert "removed leftovers" in p.stderr and "dead00" in p.stderr
        assert not [x for x in leftovers() if "dead00" in x]
    finally:
        subprocess.run(["ip", "netns", "del", "mnp-dead00-0"], capture_output=True)
        subprocess.run(["ip", "link", "del", "mnpb-dead00"], capture_output=True)


def test_no_isolate_fallback_warns_and_runs(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "env.yaml", nodes=2, ranks_per_node=1, transport="tcp",
                    command=[sys.executable, str(JOBS / "envdump.py")])
    p = run_mnp(["launch", "--no-isolate", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr
    assert "warning: nodes are not isolated" in p.stderr
    recs = _env_lines(p.stdout)
    assert sorted(r["rank"] for r in recs) == [0, 1]
    assert {r["env"]["MNP_NODE_INDEX"] for r in recs} == {"0", "1"}


def test_retry_attempts_follow_batch_rules(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    # Attempts 1 and 2 fail (exit 3), attempt 3 succeeds: the rank sees AWS_BATCH_JOB_ATTEMPT count up.
    # Every rank prints (one write) and passes a barrier before any exits: no rank is stopped before it printed.
    code = ("import os, sys; from mpi4py import MPI; a = int(os.environ['AWS_BATCH_JOB_ATTEMPT']); "
            "sys.stdout.write(f'ATTEMPT {a}\\n'); sys.stdout.flush(); MPI.COMM_WORLD.Barrier(); "
            "sys.exit(0 if a >= 3 else 3)")
    job = write_job(tmp_path / "r.yaml", nodes=2, ranks_per_node=1, command=[sys.executable, "-c", code],
                    retry={"attempts": 4, "evaluate_on_exit": [{"on_exit_code": "3", "action": "retry"},
                                                               {"on_exit_code": "*", "action": "exit"}]})
    p = run_mnp(["launch", "--json", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr
    assert "attempt 1 of 4 failed" in p.stderr and "attempt 2 of 4 failed" in p.stderr
    job_id = json.loads(p.stdout)["job_id"]
    rec = json.loads(run_mnp(["status", "--json", job_id], mnp_home).stdout)
    states = [t["state"] for t in rec["transitions"]]
    assert states.count("RUNNABLE") == 3 and states[-1] == "SUCCEEDED" and "FAILED" not in states
    assert [a["exit_code"] for a in rec["info"]["attempts"]] == [3, 3] and rec["info"]["attempt"] == 3
    assert "ATTEMPT 3" in run_mnp(["logs", job_id, "--rank", "1"], mnp_home).stdout
    assert "ATTEMPT 1" in run_mnp(["logs", job_id, "--rank", "0", "--attempt", "1"], mnp_home).stdout


def test_retry_exit_rule_and_timeout_are_final(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "x.yaml", nodes=1, ranks_per_node=1, command="sh -c 'exit 7'",
                    retry={"attempts": 3, "evaluate_on_exit": [{"on_exit_code": "7", "action": "EXIT"}]})
    p = run_mnp(["launch", str(job)], mnp_home)
    assert p.returncode == 7 and "trying again" not in p.stderr
    job = write_job(tmp_path / "t.yaml", nodes=1, ranks_per_node=1, command="sleep 30", timeout=1,
                    retry={"attempts": 3})
    p = run_mnp(["launch", "--grace", "0.5", str(job)], mnp_home)
    assert p.returncode == 124 and "trying again" not in p.stderr  # Batch does not retry a timed-out job


def test_killed_coordinator_is_recovered_at_next_start(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    """SIGKILL the coordinator itself: its nodes die with it (death signals), the next mnp removes what is left of
    its cluster, and its record is made FAILED instead of saying RUNNING forever."""
    import os

    job = write_job(tmp_path / "long.yaml", nodes=2, ranks_per_node=1, command="sleep 100")
    proc = subprocess.Popen([sys.executable, "-m", "mnp", "launch", str(job)],
                            env={**os.environ, "MNP_HOME": str(mnp_home)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _our_sleepers(mnp_home):
        time.sleep(0.2)
    assert _our_sleepers(mnp_home)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _our_sleepers(mnp_home):
        time.sleep(0.1)
    assert not _our_sleepers(mnp_home), "ranks outlived their killed coordinator"
    # Its nodes' processes died with it; as orphans they are reaped by the machine's init, a moment later.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and [x for x in leftovers() if x.startswith("process")]:
        time.sleep(0.2)
    assert not [x for x in leftovers() if x.startswith("process")]
    assert any(x.startswith("netns mnp-") for x in leftovers())  # the namespaces are still there...
    st = json.loads(run_mnp(["list", "--json"], mnp_home).stdout)
    assert st[0]["state"] == "FAILED" and "coordinator" in st[0]["reason"]
    ok = write_job(tmp_path / "ok.yaml", nodes=1, ranks_per_node=1, command="true")
    p = run_mnp(["launch", str(ok)], mnp_home)  # ...until the next start removes them
    assert p.returncode == 0 and "removed leftovers" in p.stderr


def test_nodes_on_one_machine_get_a_tmpdir_each(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    """Local nodes share the host's /tmp, and PID namespaces repeat PIDs: PRRTE's and PMIx's session files
    (/tmp/prte.<host>.<pid>, /tmp/prted.<pid>) collided across nodes (Open MPI exit 213, "listener thread failed
    to start"). Each node's processes get a TMPDIR of their own, removed with the node; the job's own wins."""
    code = ("import os, sys; from mpi4py import MPI; t = os.environ['TMPDIR']; open(os.path.join(t, 'f'), 'w'); "
            "print('TMP', MPI.COMM_WORLD.rank, t, os.access(t, os.W_OK), flush=True)")
    job = write_job(tmp_path / "t.yaml", nodes=2, ranks_per_node=2, command=[sys.executable, "-c", code])
    p = run_mnp(["launch", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr
    seen = {int(r): (d, ok) for r, d, ok in (ln.split()[-3:] for ln in p.stdout.splitlines() if " TMP " in ln)}
    assert sorted(seen) == [0, 1, 2, 3] and all(ok == "True" for _, ok in seen.values())
    assert seen[0][0] == seen[1][0] and seen[2][0] == seen[3][0] and seen[0][0] != seen[2][0]
    assert not any(Path(d).exists() for d, _ in seen.values())  # removed with the node
    mine = write_job(tmp_path / "m.yaml", nodes=2, ranks_per_node=1, env={"TMPDIR": str(tmp_path)},
                     command=[sys.executable, "-c", code])
    p = run_mnp(["launch", str(mine)], mnp_home)
    assert p.returncode == 0, p.stderr
    assert [ln.split()[-2] for ln in p.stdout.splitlines() if " TMP " in ln] == [str(tmp_path)] * 2


def test_killed_agent_leaves_no_private_directory(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    """An isolated node's agent is its PID 1: SIGKILL takes its watchdog with it, so the node's private directory
    (its TMPDIR, hostfiles, FIFOs) lives under the cluster's own root, which teardown removes."""
    job = write_job(tmp_path / "k.yaml", nodes=2, ranks_per_node=1,
                    command=[sys.executable, "-c", "import os, time; print('TMP', os.environ['TMPDIR'], flush=True); "
                             "time.sleep(60)"])
    proc = subprocess.Popen([sys.executable, "-m", "mnp", "launch", "--grace", "1", str(job)],
                            env={**os.environ, "MNP_HOME": str(mnp_home)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        if " TMP " in line:
            seen.append(line.split()[-1])
            if len(seen) == 2:
                break
    assert all(Path(d).is_dir() for d in seen)
    agent = next(p for p in psutil.process_iter(["name"]) if p.info["name"] == "mnp-agent-1")
    agent.kill()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 255, err
    assert not any(Path(d).exists() for d in seen)


def test_a_local_node_needs_no_watchdog_and_its_killed_agent_takes_the_node(mnp_home: Path,
                                                                             no_leftovers: None) -> None:
    """An isolated node's agent is the init of the node's PID namespace: no watchdog runs on the node (a rank sees
    the agent and its own processes), a rank cannot kill it (the kernel drops SIGKILL to a namespace's init from
    inside), and when it is killed from outside, the ranks and their children end with it."""
    p = run_mnp(["run", "-N", "2", "sh", "-c", "echo COMMS $(cat /proc/[0-9]*/comm | sort)"], mnp_home)
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in (p.stdout + p.stderr).splitlines() if "COMMS" in ln]
    assert len(lines) == 2 and all("mnp-agent-" in ln and "mnp-watchdog" not in ln for ln in lines), lines
    p = run_mnp(["run", "-N", "2", "sh", "-c", "kill -9 $PPID; echo SURVIVED"], mnp_home)
    assert p.returncode == 0 and (p.stdout + p.stderr).count("SURVIVED") == 2, p.stderr
    proc = subprocess.Popen([sys.executable, "-m", "mnp", "run", "-N", "2", "--grace", "1", "sh", "-c",
                             "sleep 101 & echo UP; exec sleep 102"], env={**os.environ, "MNP_HOME": str(mnp_home)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    up = 0
    for line in proc.stdout:
        up += "UP" in line
        if up == 2:
            break
    next(q for q in psutil.process_iter(["name"]) if q.info["name"] == "mnp-agent-1").kill()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 255, err

    def left() -> list[int]:
        return [q.pid for q in psutil.process_iter(["cmdline"]) if (q.info["cmdline"] or [])[:2] in
                (["sleep", "101"], ["sleep", "102"])]

    deadline = time.monotonic() + 10
    while left() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left()


@pytest.mark.noroot
def test_a_crashed_plain_process_clusters_directory_is_removed_at_next_start(tmp_path: Path, mnp_home: Path) -> None:
    """--no-isolate nodes keep their private files under /tmp/mnp-<id>, which names its coordinator: a crashed
    one's is removed by the next start; a live one's stays."""
    import tempfile

    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = Path(tempfile.gettempdir()) / "mnp-dead01"
    live = Path(tempfile.gettempdir()) / "mnp-11fe01"
    try:
        for d, pid in ((dead, gone.pid), (live, os.getpid())):
            d.mkdir(mode=0o700)
            (d / ".owner").write_text(f"{pid}\n")
            (d / "node0-tmp").mkdir()
        p = run_mnp(["run", "--no-isolate", "-N", "1", "true"], mnp_home)
        assert p.returncode == 0, p.stderr
        assert "removed leftovers of an earlier local cluster (dead01)" in p.stderr
        assert not dead.exists() and (live / "node0-tmp").is_dir()
    finally:
        for d in (dead, live):
            subprocess.run(["rm", "-rf", str(d)], check=False)
