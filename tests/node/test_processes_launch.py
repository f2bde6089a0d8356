"""Multi-process nodes through the real CLI on local nodes: essential processes end the job's work, sidecars are
stopped, non-essential failures do not fail the job, HEALTHY and SUCCESS dependencies, Batch multi-container
job definitions, and the maze example."""

from __future__ import annotations

import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import ROOT, run_mnp, write_job

pytestmark = pytest.mark.namespaces

PY = sys.executable


def _job_id(stderr: str) -> str:
    m = re.search(r"mnp: job ([0-9a-f]+) ", stderr)
    assert m, stderr
    return m.group(1)


def _record(p: Any, home: Path) -> dict[str, Any]:
    rec: dict[str, Any] = json.loads(run_mnp(["status", "--json", _job_id(p.stderr)], home).stdout)
    return rec


def _alive(marker: str) -> list[int]:
    return [q.pid for q in psutil.process_iter(["cmdline"]) if marker in " ".join(q.info["cmdline"] or [])]


def test_sidecar_is_stopped_when_the_essential_process_ends(tmp_path: Path, mnp_home: Path,
                                                            no_leftovers: None) -> None:
    marker = f"sidecar-{uuid.uuid4().hex[:8]}"
    job = write_job(tmp_path / "side.yaml", name="side", nodes=1, timeout=60, processes=[
        {"name": "main", "command": ["sh", "-c", "sleep 0.5; echo main-done"]},
        {"name": "side", "essential": False,
         "command": ["sh", "-c", "echo side-up; exec sleep 300", marker]}])
    p = run_mnp(["launch", str(job)], mnp_home, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "[node 0 main] main-done" in p.stdout and "[node 0 side] side-up" in p.stdout
    rec = _record(p, mnp_home)
    procs = rec["info"]["processes"]["0"]
    assert procs["main"]["exit_code"] == 0 and procs["main"]["essential"] is True
    assert procs["side"]["signal"] in ("SIGTERM", "SIGKILL") and procs["side"]["essential"] is False
    assert rec["state"] == "SUCCEEDED" and "process main (essential) exited with code 0" in rec["reason"]
    assert not _alive(marker)
    logs = Path(rec["dir"]) / "logs"
    assert (logs / "node0.main.out").read_text() == "main-done\n"
    assert (logs / "node0.side.out").read_text() == "side-up\n"


def test_a_failing_non_essential_process_does_not_fail_the_job(tmp_path: Path, mnp_home: Path,
                                                              no_leftovers: None) -> None:
    job = write_job(tmp_path / "nonessential.yaml", name="nonessential", nodes=2, ranks_per_node=1, mpi="mpich",
                    timeout=60, command=["sh", "-c", "sleep 1; echo rank-$MNP_RANK"],
                    processes=[{"name": "flaky", "essential": False, "command": ["sh", "-c", "echo oops >&2; exit 3"]}])
    p = run_mnp(["launch", str(job)], mnp_home, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "[node 0 rank 0] rank-0" in p.stdout and "[node 1 rank 1] rank-1" in p.stdout
    assert "[node 1 flaky] oops" in p.stderr
    rec = _record(p, mnp_home)
    assert rec["state"] == "SUCCEEDED" and rec["exit_code"] == 0
    assert {n: v["flaky"]["exit_code"] for n, v in rec["info"]["processes"].items()} == {"0": 3, "1": 3}


def test_healthy_dependency_waits_for_the_health_check(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    ready = tmp_path / "ready"
    job = write_job(tmp_path / "healthy.yaml", name="healthy", nodes=1, timeout=60, processes=[
        {"name": "db", "essential": False, "command": ["sh", "-c", f"sleep 1; touch {ready}; exec sleep 300"],
         "health": {"command": ["test", "-f", str(ready)], "interval": 0.2, "retries": 30}},
        {"name": "app", "command": ["sh", "-c", f"test -f {ready} && echo saw-ready"],
         "depends_on": [{"name": "db", "condition": "HEALTHY"}]}])
    p = run_mnp(["launch", str(job)], mnp_home, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "[node 0 app] saw-ready" in p.stdout
    procs = _record(p, mnp_home)["info"]["processes"]["0"]
    assert procs["db"]["healthy"] is True and procs["app"]["exit_code"] == 0


def test_a_failed_success_dependency_fails_the_job_with_the_reason(tmp_path: Path, mnp_home: Path,
                                                                   no_leftovers: None) -> None:
    job = write_job(tmp_path / "prep.yaml", name="prep", nodes=1, ranks_per_node=1, mpi="mpich", timeout=60,
                    command=["echo", "must-not-run"],
                    processes=[{"name": "prep", "essential": False, "command": ["sh", "-c", "exit 3"]}],
                    ranks_depend_on=[{"name": "prep", "condition": "SUCCESS"}])
    p = run_mnp(["launch", str(job)], mnp_home, timeout=60)
    assert p.returncode == 1, p.stderr
    assert "must-not-run" not in p.stdout
    assert "dependency 'prep' (SUCCESS) exited with code 3" in p.stderr
    rec = _record(p, mnp_home)
    assert rec["state"] == "FAILED" and "node 0 rank 0" in rec["reason"]


def test_a_dependency_on_another_nodes_process(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "peer.yaml", name="peer", nodes=2, timeout=60, node_ranges=[
        {"target_nodes": "0", "processes": [
            {"name": "prep", "essential": False, "command": ["sh", "-c", "sleep 0.5; exit 4"]},
            {"name": "hold", "command": ["sleep", "300"]}]},
        {"target_nodes": "1", "processes": [
            {"name": "app", "command": ["echo", "must-not-run"],
             "depends_on": [{"name": "prep", "condition": "SUCCESS", "node": 0}]}]}])
    p = run_mnp(["launch", str(job)], mnp_home, timeout=60)
    assert p.returncode == 1, p.stderr
    assert "must-not-run" not in p.stdout
    rec = _record(p, mnp_home)
    assert rec["reason"] == ("node 1 process app did not start: not started: dependency 'prep' on node 0 (SUCCESS) "
                             "exited with code 4")
    assert rec["info"]["processes"]["0"]["hold"]["signal"] in ("SIGTERM", "SIGKILL")


def test_batch_multi_container_job_definition(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    container = {"image": "public.ecr.aws/docker/library/python:3.11", "resourceRequirements": [
        {"type": "VCPU", "value": "1"}]}
    jobdef = {"jobDefinitionName": "multi", "type": "multinode", "nodeProperties": {
        "numNodes": 2, "mainNode": 0, "nodeRangeProperties": [
            {"targetNodes": "0", "ecsProperties": {"taskProperties": [{"containers": [
                {**container, "name": "app", "command": ["sh", "-c", "echo app $GREETING; exec sleep 300"],
                 "environment": [{"name": "GREETING", "value": "hi"}]},
                {**container, "name": "logger", "essential": False, "command": ["sh", "-c", "echo logging; sleep 300"],
                 "dependsOn": [{"containerName": "app", "condition": "START"}]}]}]}},
            {"targetNodes": "1", "ecsProperties": {"taskProperties": [{"containers": [
                {**container, "name": "helper", "essential": False, "command": ["sh", "-c", "echo helper; sleep 300"]},
                {**container, "name": "worker",
                 "command": ["sh", "-c", "sleep 1; echo worker on $AWS_BATCH_JOB_NODE_INDEX"],
                 "dependsOn": [{"containerName": "helper", "condition": "START"}]}]}]}}]}}
    path = tmp_path / "multi.json"
    path.write_text(json.dumps(jobdef))
    p = run_mnp(["launch", str(path)], mnp_home, timeout=60)
    assert p.returncode == 0, p.stderr
    for line in ("[node 0 app] app hi", "[node 0 logger] logging", "[node 1 helper] helper",
                 "[node 1 worker] worker on 1"):
        assert line in p.stdout
    rec = _record(p, mnp_home)
    procs = rec["info"]["processes"]
    assert procs["1"]["worker"]["exit_code"] == 0 and procs["0"]["logger"]["essential"] is False
    assert "node 1 process worker (essential) exited with code 0" in rec["reason"]  # it ended the job's work
    assert procs["0"]["app"]["signal"] in ("SIGTERM", "SIGKILL")


def test_maze_example_is_solved(mnp_home: Path, no_leftovers: None) -> None:
    # A warm-up of 3 s: the explorer surely meets the server's 503 answers (or a server not yet listening) first.
    p = run_mnp(["launch", "-x", "MAZE_WARMUP=3", "examples/maze/job.yaml"], mnp_home, timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert re.search(r"^\[node 1 explorer\] explorer: http://10\.[0-9.]+:8642 not ready yet; retrying$", p.stdout,
                     re.MULTILINE), p.stdout
    assert re.search(r"\[node 1 explorer\] explorer: solved the maze in \d+ moves", p.stdout), p.stdout
    assert "[node 0 server] maze 12x12" in p.stdout
    assert "[node 0 telemetry] telemetry: " in p.stdout
    rec = _record(p, mnp_home)
    assert rec["state"] == "SUCCEEDED"
    assert rec["info"]["processes"]["1"]["explorer"]["exit_code"] == 0
    assert rec["info"]["processes"]["0"]["telemetry"]["essential"] is False
    st = run_mnp(["status", rec["job_id"]], mnp_home).stdout
    assert "command   (processes: server, telemetry, explorer)" in st
    assert "  process node 1 explorer: essential, exit 0" in st
    logs = run_mnp(["logs", rec["job_id"], "--node", "1"], mnp_home).stdout
    assert re.search(r"^\[node 1 explorer\] explorer: solved the maze in \d+ moves$", logs, re.MULTILINE), logs


OMPI = ROOT / ".venv-ompi" / "bin" / "python"


@pytest.mark.skipif(not OMPI.exists(), reason="no Open MPI environment (setup.sh makes .venv-ompi)")
def test_open_mpi_ranks_wait_for_a_process_through_mpirun(tmp_path: Path, mnp_home: Path,
                                                          no_leftovers: None) -> None:
    """With a launcher, the ranks' dependencies hold mpirun on the main node and its daemons on the others."""
    job = write_job(tmp_path / "ompi.yaml", name="ompi-side", nodes=2, ranks_per_node=1, mpi="auto",
                    transport="tcp", timeout=120, command=[str(OMPI), str(ROOT / "examples/hello.py")],
                    processes=[{"name": "prep", "essential": False,
                                "command": ["sh", "-c", "sleep 0.5; echo prepared"]}],
                    ranks_depend_on=[{"name": "prep", "condition": "SUCCESS"}])
    p = run_mnp(["launch", str(job)], mnp_home, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    for node in (0, 1):  # each node's ranks start after its prep ended
        assert lines.index(f"[node {node} prep] prepared") < next(
            i for i, ln in enumerate(lines) if ln.startswith(f"[node {node} rank {node}] hello"))
    assert "[node 0 rank 0] 2 ranks on 2 hosts: node0, node1" in lines
