"""AWS Batch MNP simulated for real: `mnp node` started in isolated local nodes with Batch's variables, children
in random order with random delays, a child that never arrives, and a main node that dies."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import JOBS, run_mnp, write_job

from mnp.cluster.local import LocalCluster
from mnp.records import new_job_id

pytestmark = pytest.mark.namespaces
SECRET = "test-secret-0123456789abcdef"


class BatchSim:
    def __init__(self, tmp: Path, n: int, main: int, args: list[str], start: set[int] | None = None,
                 delays: dict[int, float] | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.tmp, self.n, self.main = tmp, n, main
        self.cluster = LocalCluster(new_job_id(), n)
        start = set(range(n)) if start is None else start
        delays = delays or {}
        cluster = self.cluster

        def init(node: int, _fd: int) -> int:
            if node not in start:  # this container never starts
                while True:
                    time.sleep(3600)
            time.sleep(delays.get(node, 0))
            out = os.open(tmp / f"node{node}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out, 1)
            os.dup2(out, 2)
            env = {**os.environ, "AWS_BATCH_JOB_NODE_INDEX": str(node), "AWS_BATCH_JOB_NUM_NODES": str(n),
                   "AWS_BATCH_JOB_MAIN_NODE_INDEX": str(main), "AWS_BATCH_JOB_ID": "a1b2c3d4-batch",
                   "AWS_BATCH_JOB_ATTEMPT": "1", "MNP_JOB_SECRET": SECRET, "MNP_HOME": str(tmp / f"home{node}"),
                   **(extra_env or {})}
            env.pop("AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS", None)
            if node != main:
                env["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] = cluster.nodes[main].address
            os.execve(sys.executable, [sys.executable, "-m", "mnp", "node", *args], env)
            return 1

        self.cluster.create(1 << 30, init=init)

    def wait(self, node: int, timeout: float) -> int | None:
        return self.cluster._nodes[node].wait(timeout)

    def log(self, node: int) -> str:
        p = self.tmp / f"node{node}.log"
        return p.read_text() if p.exists() else ""

    def stop(self) -> None:
        self.cluster.teardown()


def test_children_in_random_order_with_job_file(tmp_path: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "job.yaml", name="batchjob", ranks_per_node=1, transport="tcp",
                    command=[sys.executable, str(JOBS / "envdump.py")])
    rnd = random.Random(7)
    delays = {i: rnd.uniform(0.0, 1.5) for i in (0, 1, 2, 3)}
    delays[1] = 0.0  # a child before the main node: it must keep dialling
    delays[2] = 2.0
    sim = BatchSim(tmp_path, 4, main=2, args=["--json", "--join-timeout", "30", str(job)], delays=delays)
    try:
        assert sim.wait(2, 90) == 0, sim.log(2)
        for child in (0, 1, 3):
            assert sim.wait(child, 20) == 0, sim.log(child)
        main_log = sim.log(2)
        result = json.loads(main_log.strip().splitlines()[-1])
        assert result["state"] == "SUCCEEDED" and result["job_id"] == "a1b2c3d4-batch"
        assert [n["address"] for n in result["nodes"]] == [n.address for n in sim.cluster.nodes]
        recs = [json.loads(ln.split("ENV ", 1)[1]) for ln in main_log.splitlines() if "ENV {" in ln]
        assert sorted(r["rank"] for r in recs) == [0, 1, 2, 3]
        for r in recs:
            e = r["env"]
            assert e["AWS_BATCH_JOB_MAIN_NODE_INDEX"] == "2"
            assert e["AWS_BATCH_JOB_ID"] == f"a1b2c3d4-batch#{e['AWS_BATCH_JOB_NODE_INDEX']}"
            if e["AWS_BATCH_JOB_NODE_INDEX"] == "2":
                assert e["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] is None
            else:
                assert e["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] == sim.cluster.nodes[2].address
    finally:
        sim.stop()


def test_no_rank_can_find_the_job_secret(tmp_path: Path, no_leftovers: None) -> None:
    """MNP_JOB_SECRET derives every key of the job: no rank sees it in its environment nor in the environment of
    any process it can read (/proc/PID/environ: the agent, `mnp node`), on the main node or a child."""
    job = write_job(tmp_path / "job.yaml", name="scan", ranks_per_node=1, transport="tcp",
                    command=[sys.executable, str(JOBS / "secretscan.py"), SECRET])
    sim = BatchSim(tmp_path, 2, main=0, args=["--json", "--join-timeout", "30", str(job)])
    try:
        assert sim.wait(0, 60) == 0, sim.log(0)
        scans = [json.loads(ln.split("SECRET-SCAN ", 1)[1]) for ln in sim.log(0).splitlines() if "SECRET-SCAN" in ln]
        assert len(scans) == 2 and scans == [[], []], sim.log(0)
    finally:
        sim.stop()


def test_no_named_process_can_find_the_job_secret(tmp_path: Path, no_leftovers: None) -> None:
    """The same for processes beside the ranks (``processes:``) and their health checks' environment."""
    scan = [sys.executable, str(JOBS / "secretscan.py"), SECRET]
    job = write_job(tmp_path / "job.yaml", name="scanp", transport="tcp", processes=[
        {"name": "side", "essential": False, "command": ["sleep", "60"],
         "health": {"command": ["sh", "-c", f'test -z "$MNP_JOB_SECRET" && ! env | grep -q {SECRET}'],
                    "interval": 0.2, "retries": 1}},
        {"name": "scan", "essential": False, "command": scan,
         "depends_on": [{"name": "side", "condition": "HEALTHY"}]},
        # the essential end waits for both nodes' scans: an essential process's end ends the job (ECS's rule), and
        # node 0's must not stop node 1's scan before it printed
        {"name": "end", "command": ["true"], "depends_on": [{"name": "scan", "condition": "COMPLETE", "node": n}
                                                            for n in (0, 1)]}])
    sim = BatchSim(tmp_path, 2, main=0, args=["--json", "--join-timeout", "30", str(job)])
    try:
        assert sim.wait(0, 60) == 0, sim.log(0)  # the health check passed: the secret was not in its environment
        scans = [json.loads(ln.split("SECRET-SCAN ", 1)[1]) for ln in sim.log(0).splitlines() if "SECRET-SCAN" in ln]
        assert len(scans) == 2 and scans == [[], []], sim.log(0)
    finally:
        sim.stop()


def test_each_node_runs_its_own_command(tmp_path: Path, no_leftovers: None) -> None:
    # The Batch way: the entry point gets the node range's container.command as arguments.
    sim = BatchSim(tmp_path, 2, main=0, args=["--", sys.executable, str(JOBS / "envdump.py")],
                   extra_env={"MNP_JOIN_TIMEOUT": "30"})
    try:
        assert sim.wait(0, 60) == 0, sim.log(0)
        assert sim.log(0).count("ENV {") >= 2
    finally:
        sim.stop()


def test_child_never_arrives_deadline_names_it(tmp_path: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "job.yaml", ranks_per_node=1, command="true")
    sim = BatchSim(tmp_path, 3, main=0, args=["--join-timeout", "3", str(job)], start={0, 1})
    try:
        assert sim.wait(0, 60) == 255, sim.log(0)
        last = sim.log(0).strip().splitlines()[-1]
        assert "node(s) 2 did not join within 3s (2/3 joined: 0, 1)" in last
        assert "waiting for node 2" in sim.log(0)
        assert sim.wait(1, 20) is not None  # the child that came was told to go
    finally:
        sim.stop()


def test_main_node_dies_children_exit(tmp_path: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "job.yaml", ranks_per_node=1, command="sleep 300")
    sim = BatchSim(tmp_path, 3, main=0, args=["--dead-after", "2", str(job)])
    try:
        deadline = time.monotonic() + 30
        while "RUNNING" not in _states(tmp_path / "home0") and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(sim.cluster._nodes[0].pid, signal.SIGTERM)  # the main container is gone
        t0 = time.monotonic()
        for child in (1, 2):
            assert sim.wait(child, 30) not in (None, 0), sim.log(child)
        assert time.monotonic() - t0 < 25
        assert "coordinator silent" in sim.log(1)
    finally:
        sim.stop()


def _states(home: Path) -> str:
    import sqlite3

    db = home / "mnp.db"
    if not db.exists():
        return ""
    try:
        with sqlite3.connect(db) as c:
            return " ".join(r[0] for r in c.execute("SELECT state FROM transitions"))
    except sqlite3.Error:
        return ""


@pytest.mark.parametrize("env,message", [
    ({}, "AWS_BATCH_JOB_NUM_NODES is not set"),
    ({"AWS_BATCH_JOB_NUM_NODES": "2", "AWS_BATCH_JOB_NODE_INDEX": "1", "AWS_BATCH_JOB_MAIN_NODE_INDEX": "0",
      "MNP_JOB_SECRET": SECRET}, "AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS is not set"),
    ({"AWS_BATCH_JOB_NUM_NODES": "2", "AWS_BATCH_JOB_NODE_INDEX": "0", "AWS_BATCH_JOB_MAIN_NODE_INDEX": "0"},
     "MNP_JOB_SECRET"),
    ({"AWS_BATCH_JOB_NUM_NODES": "2", "AWS_BATCH_JOB_NODE_INDEX": "2", "AWS_BATCH_JOB_MAIN_NODE_INDEX": "0"},
     "AWS_BATCH_JOB_NODE_INDEX: 2 is not below"),
])
def test_bad_batch_environment_exits_2(mnp_home: Path, env: dict[str, str], message: str) -> None:
    clean = {k: "" for k in ("AWS_BATCH_JOB_NUM_NODES", "AWS_BATCH_JOB_NODE_INDEX", "AWS_BATCH_JOB_MAIN_NODE_INDEX",
                             "AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS", "MNP_JOB_SECRET")}
    p = run_mnp(["node", "job.yaml"], mnp_home, env={**clean, **env}, timeout=60)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_batch_job_definition_runs_with_mnp_launch(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    jobdef = {"jobDefinitionName": "hello-def", "type": "multinode", "timeout": {"attemptDurationSeconds": 120},
              "nodeProperties": {"numNodes": 3, "mainNode": 0, "nodeRangeProperties": [
                  {"targetNodes": "0:", "container": {"command": [sys.executable, str(JOBS / "envdump.py")],
                                                      "environment": [{"name": "USER_VAR", "value": "all"}],
                                                      "linuxParameters": {"sharedMemorySize": 256}}},
                  {"targetNodes": "2", "container": {"command": [sys.executable, str(JOBS / "envdump.py")],
                                                     "environment": [{"name": "USER_VAR", "value": "two"}]}}]}}
    path = tmp_path / "jobdef.json"
    path.write_text(json.dumps(jobdef))
    p = run_mnp(["launch", str(path)], mnp_home)
    assert p.returncode == 0, p.stderr
    recs = [json.loads(ln.split("ENV ", 1)[1]) for ln in p.stdout.splitlines() if "ENV {" in ln]
    by_node = {r["env"]["AWS_BATCH_JOB_NODE_INDEX"]: r["env"]["USER_VAR"] for r in recs}
    assert by_node["0"] == "all" and by_node["1"] == "all" and by_node["2"] == "two"


def test_batch_retry_strategy_is_honoured(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    code = "import os, sys; sys.exit(0 if os.environ['AWS_BATCH_JOB_ATTEMPT'] == '2' else 5)"
    jobdef = {"jobDefinitionName": "retry-def", "type": "multinode",
              "retryStrategy": {"attempts": 2, "evaluateOnExit": [{"onExitCode": "5", "action": "retry"}]},
              "nodeProperties": {"numNodes": 2, "mainNode": 0, "nodeRangeProperties": [
                  {"targetNodes": "0:", "container": {"command": [sys.executable, "-c", code]}}]}}
    path = tmp_path / "jobdef.json"
    path.write_text(json.dumps(jobdef))
    p = run_mnp(["launch", str(path)], mnp_home)
    assert p.returncode == 0, p.stderr
    assert "attempt 1 of 2 failed" in p.stderr


def test_keyed_attacker_is_refused_and_changes_nothing(tmp_path: Path, no_leftovers: None) -> None:
    """A peer holding a node's key (here: node 2 of 3, whose container never starts; in Batch every key derives
    from the shared secret) joins as that node and then tries what only other roles may do: run a shell command
    through the launcher path (no launcher runs in a PMI job), report another node's rank as failed, forge its
    output, and a second connection with node 0's key. Each is refused and recorded; the job still ends as its
    real ranks decide, and no command ran."""
    from mnp.control import messages as m
    from mnp.control.channel import AgentChannel, keys_from_secret
    from mnp.records import Records

    marker = tmp_path / "pwned"
    job = write_job(tmp_path / "job.yaml", name="attacked", ranks_per_node=1, transport="tcp",
                    command=[sys.executable, "-c", "import time; time.sleep(3); print('real rank done')"])
    sim = BatchSim(tmp_path, 3, main=0, args=["--json", "--join-timeout", "30", str(job)], start={0, 1})
    keys = keys_from_secret(SECRET, 3)
    endpoint = f"tcp://{sim.cluster.nodes[0].address}:8740"
    evil = AgentChannel(endpoint, keys.agent_handoff(2))
    spoof = AgentChannel(endpoint, keys.agent_handoff(0))
    try:
        from mnp.fabric.decide import node_facts

        evil.send(m.Hello("node2", 1, 1, fabric=node_facts(False)))
        start = None
        deadline = time.monotonic() + 30
        while start is None and time.monotonic() < deadline:
            got = evil.recv_nowait()
            if got is not None and isinstance(got[0], m.Start):
                start = got[0]
            evil.send(m.Heartbeat())
            time.sleep(0.05)
        assert start is not None, sim.log(0)
        assert all("MNP_JOB_SECRET" not in k for k in start.env)
        evil.send(m.Started({2: 4242}))
        evil.send(m.Rexec("2.1", "node0", f"touch {marker}"))
        evil.send(m.Rexec("2.2", "node0", f"prted; touch {marker}"))
        evil.send(m.Exit(0, 9, None, "forged"))
        evil.send(m.Output(1, "stdout"), b"forged output\n")
        evil.send(m.Exec("2.3", f"touch {marker}"))  # a coordinator-to-agent message: not even decodable here
        spoof.send(m.Exit(0, 9, None, "spoofed"))
        evil.send(m.Exit(2, 0))  # its own rank: that much it may say
        for _ in range(40):
            evil.send(m.Heartbeat())
            time.sleep(0.1)
            got = evil.recv_nowait()
            if got is not None and isinstance(got[0], m.Shutdown):
                break
        assert sim.wait(0, 60) == 0, sim.log(0)
        log = sim.log(0)
        result = json.loads(log.strip().splitlines()[-1])
        assert result["state"] == "SUCCEEDED", log
        assert "forged output" not in log and "real rank done" in log
        assert not marker.exists()
        refused = Records(tmp_path / "home0").get(result["job_id"]).info["refused"]
        assert any("no launcher runs in this job" in r for r in refused), refused
        assert any("rank 0, which is not its own" in r for r in refused), refused
        assert any("output for rank 1" in r for r in refused), refused
        assert any("invalid message" in r for r in refused), refused
        assert any("second connection holding node 0's key" in r for r in refused), refused
        assert log.count("mnp: refused:") >= 5
    finally:
        for a in (evil, spoof):
            a.sock.linger = 0
            a.close()
        sim.stop()


_PINS = {"mpich": {"FI_PROVIDER": "tcp", "FI_TCP_IFACE": "eth0", "MPIR_CVAR_CH4_NETMOD": "ofi"},
         "openmpi": {"OMPI_MCA_btl_tcp_if_include": "eth0", "OMPI_MCA_oob_tcp_if_include": "eth0"},
         "impi": {"I_MPI_OFI_PROVIDER": "tcp", "FI_TCP_IFACE": "eth0", "I_MPI_FABRICS": "shm:ofi"}}
_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("family,python", [("mpich", sys.executable),
                                           ("openmpi", str(_ROOT / ".venv-ompi" / "bin" / "python")),
                                           ("impi", str(_ROOT / ".venv-impi" / "bin" / "python"))])
def test_interface_probed_and_pinned_without_a_default_route(tmp_path: Path, no_leftovers: None, family: str,
                                                             python: str) -> None:
    """Batch nodes on a subnet without a default route (MPICH left alone picked lo there and every rank died in
    MPI_Init): every node lists its interfaces, the one they share is chosen and pinned in the family's words, and
    a pingpong between the two nodes runs over it."""
    import subprocess

    if not Path(python).exists():
        pytest.skip(f"{python} not set up: ./setup.sh")
    job = write_job(tmp_path / "job.yaml", name="pp", ranks_per_node=1, transport="tcp",
                    command=[python, str(JOBS / "pingpong.py")])
    sim = BatchSim(tmp_path, 2, main=0, args=["--json", "--join-timeout", "30", str(job)])
    try:
        for i in range(2):
            routes = subprocess.run(["ip", "-n", sim.cluster.ns(i), "route", "show"], capture_output=True,
                                    text=True, check=True).stdout
            assert "default" not in routes and "eth0" in routes, routes
        assert sim.wait(0, 120) == 0, sim.log(0)
        assert "LATENCY_US" in sim.log(0)
    finally:
        sim.stop()
    st = run_mnp(["status", "--json", "a1b2c3d4-batch"], tmp_path / "home0")
    info = json.loads(st.stdout)["info"]
    assert info["mpi"]["family"] == family
    subnet = sim.cluster.nodes[0].address.rsplit(".", 1)[0]
    assert info["iface"]["name"] == "eth0"
    assert info["iface"]["why"].startswith(f"eth0 ({subnet}.0/24): holds {sim.cluster.nodes[0].address}")
    env = info["transport"]["env"]
    assert {k: env.get(k) for k in _PINS[family]} == _PINS[family]


@pytest.mark.parametrize("on_stuck", ["wait", "fail"])
def test_child_never_joins_job_stuck_in_runnable_alerts(tmp_path: Path, on_stuck: str, no_leftovers: None) -> None:
    """A Batch main node whose child never starts: past transit_timeout one alert line names RUNNABLE and the
    node, the record keeps it (mnp list --stuck), --notify gets it as JSON; on_stuck decides what follows."""
    job = write_job(tmp_path / "job.yaml", ranks_per_node=1, command="true", transit_timeout=2, on_stuck=on_stuck)
    sink = tmp_path / "alert.json"
    notify = f"cat > {sink}"
    sim = BatchSim(tmp_path, 3, main=0, start={0, 1},
                   args=["--json", "--join-timeout", "12" if on_stuck == "wait" else "60", "--notify", notify,
                         str(job)])
    try:
        code = sim.wait(0, 90)
        log = sim.log(0)
        stuck_lines = [ln for ln in log.splitlines() if ln.startswith("mnp: warning: job a1b2c3d4-batch stuck in")]
        assert len(stuck_lines) == 1, log
        assert "node 2 to join (its container has not dialled" in stuck_lines[0]
        alert = json.loads(sink.read_text())
        assert alert["job_id"] == "a1b2c3d4-batch" and alert["state"] == "RUNNABLE" and alert["waited_s"] >= 2
        assert alert["waiting_for"][0].startswith("node 2 to join") and alert["on_stuck"] == on_stuck
        result = json.loads(next(ln for ln in log.splitlines() if ln.startswith("{")))
        if on_stuck == "fail":  # failed at the alert, long before the 60 s join deadline
            assert code == 124 and result["state"] == "FAILED", log
            assert result["reason"] == alert["line"]
        else:  # waited on, until the join deadline
            assert code == 255 and "node(s) 2 did not join within 12s" in result["reason"], log
        listed = run_mnp(["list", "--stuck", "--json"], tmp_path / "home0")
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert [r["job_id"] for r in rows] == ["a1b2c3d4-batch"] and rows[0]["alerts"][0]["state"] == "RUNNABLE"
        status = run_mnp(["status", "a1b2c3d4-batch"], tmp_path / "home0")
        assert "stuck     job a1b2c3d4-batch stuck in RUNNABLE" in status.stdout
    finally:
        sim.stop()
