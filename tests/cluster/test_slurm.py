"""mnp inside a real Slurm allocation (Debian's slurmctld, slurmd and munged over namespace nodes, tests/slurmnodes.py):
agents start as the tasks of one srun step, through salloc and sbatch; exit codes, lost nodes, Ctrl-C and the
step's end; --via ssh still works. Nothing is mocked."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_mnp
from slurmnodes import SlurmNodes, slurm_installed

pytestmark = [pytest.mark.namespaces,
              pytest.mark.skipif(not slurm_installed(), reason="Slurm is not installed (setup.sh installs it)")]

HELLO = ROOT / "tests" / "cluster" / "srun_hello.py"
MNP = [sys.executable, "-m", "mnp", "launch"]


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmNodes]:
    nodes = SlurmNodes(4, sshd=True).start()
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def work(slurm: SlurmNodes, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A directory every node sees (not /tmp: the nodes have their own), MNP_HOME inside; after the test, no step
    of any job may still run and no agent may be left on any node."""
    d = slurm.dir / "work" / request.node.name.replace("[", "_").replace("]", "")
    (d / "home").mkdir(parents=True)
    yield d
    deadline = time.monotonic() + 15
    while (steps := slurm.steps()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not steps, f"slurm steps still running: {steps}"
    left = _agents(slurm)
    assert not left, f"agents left on the nodes: {left}"


def _agents(slurm: SlurmNodes) -> list[str]:
    found = []
    for i in range(slurm.n):
        for pid in slurm.node_pids(i):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "mnp.cluster.srun_task" in cmd or "mnp.node.agent" in cmd or str(HELLO) in cmd:
                found.append(f"node{i} pid {pid}: {cmd[:100]}")
    return found


def _job(d: Path, **kw: object) -> Path:
    fields = {"name": "srunhello", "command": [sys.executable, str(HELLO)], "ranks_per_node": 1, "mpi": "mpich",
              "transport": "tcp", "timeout": 120, **kw}
    path = d / "job.yaml"
    path.write_text(yaml.safe_dump(fields, sort_keys=False))
    return path


def _hellos(text: str) -> list[dict[str, object]]:
    return sorted((json.loads(ln.split("HELLO ", 1)[1]) for ln in text.splitlines() if "HELLO {" in ln),
                  key=lambda r: int(r["rank"]))  # type: ignore[call-overload]


def _salloc(slurm: SlurmNodes, d: Path, n: int, args: list[str],
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return slurm.run(["salloc", "-N", str(n), *MNP, *args], timeout=timeout, cwd=str(ROOT),
                     env={"MNP_HOME": str(d / "home")})


def test_salloc_hello_agents_are_srun_tasks(slurm: SlurmNodes, work: Path) -> None:
    p = _salloc(slurm, work, 2, [str(_job(work))])
    assert p.returncode == 0, p.stderr
    recs = _hellos(p.stdout)
    assert [r["rank"] for r in recs] == [0, 1] and {r["size"] for r in recs} == {2}
    assert [r["host"] for r in recs] == ["node0", "node1"] and recs[0]["hosts"] == ["node0", "node1"]
    assert {r["agent_parent"] for r in recs} == {"slurmstepd"}, recs  # started by srun, not by ssh
    assert {tuple(r["slurm_env"]) for r in recs} == {("SLURM_CONF",)}  # the agent step's variables are not theirs
    assert "Slurm allocation's 2 node(s)" in p.stderr
    assert "Traceback" not in p.stderr


def test_salloc_control_tree_through_srun(slurm: SlurmNodes, work: Path) -> None:
    """--tree-width 2 on 4 nodes: nodes 2 and 3 dial node 0's agent, not the coordinator; their handoff lines come
    once node 0 said where it listens. The MPI hello's barrier is merged at node 0."""
    p = _salloc(slurm, work, 4, ["--tree-width", "2", str(_job(work))])
    assert p.returncode == 0, p.stderr
    recs = _hellos(p.stdout)
    assert [r["rank"] for r in recs] == [0, 1, 2, 3] and {r["size"] for r in recs} == {4}
    assert [r["host"] for r in recs] == ["node0", "node1", "node2", "node3"]
    assert {r["agent_parent"] for r in recs} == {"slurmstepd"}
    listed = slurm.run([*MNP[:-1], "list", "--json"], env={"MNP_HOME": str(work / "home")}, cwd=str(ROOT))
    job = json.loads(listed.stdout)[0]["job_id"]
    st = slurm.run([*MNP[:-1], "status", "--json", job], env={"MNP_HOME": str(work / "home")}, cwd=str(ROOT))
    info = json.loads(st.stdout)["info"]
    assert info["control"]["width"] == 2 and info["control"]["depth"] == 2
    assert sorted(map(int, info["agent_maxrss_kb"])) == [0, 1, 2, 3]


def test_sbatch_four_nodes(slurm: SlurmNodes, work: Path) -> None:
    job = _job(work)
    script = work / "batch.sh"
    script.write_text(f"#!/bin/sh\nexport MNP_HOME={work / 'home'}\ncd {ROOT}\n"
                      f"exec {' '.join(MNP)} --json {job}\n")
    p = slurm.run(["sbatch", "--parsable", "-N", "4", f"--output={work / 'out.txt'}", f"--error={work / 'err.txt'}",
                   str(script)], cwd=str(work))
    assert p.returncode == 0, p.stderr
    fields = slurm.wait_job(p.stdout.strip().split(";")[0])
    err = (work / "err.txt").read_text()
    assert fields["JobState"] == "COMPLETED" and fields["ExitCode"] == "0:0", (fields, err)
    result = json.loads((work / "out.txt").read_text())
    assert result["exit_code"] == 0 and result["state"] == "SUCCEEDED"
    assert [n["hostname"] for n in result["nodes"]] == ["node0", "node1", "node2", "node3"]
    assert [n["address"] for n in result["nodes"]] == slurm.addresses
    recs = _hellos(err)  # --json: rank output goes to stderr
    assert len(recs) == 4 and {r["agent_parent"] for r in recs} == {"slurmstepd"}
    assert {r["host"] for r in recs} == {"node0", "node1", "node2", "node3"}


def test_failing_rank_exit_code_propagates(slurm: SlurmNodes, work: Path) -> None:
    job = _job(work, env={"FAIL_RANK": 2, "FAIL_CODE": 7})
    p = _salloc(slurm, work, 3, ["--grace", "1", str(job)])
    assert p.returncode == 7, p.stderr
    assert "node 2 rank 2 exited with code 7" in p.stderr
    assert len(_hellos(p.stdout)) == 3


def test_lost_agent_names_its_node_and_ends_the_step(slurm: SlurmNodes, work: Path) -> None:
    """SIGKILL to node 1's agent: srun ends the whole step (--kill-on-bad-exit); mnp names node 1, not a node
    killed because of it, and exits 255."""
    job = _job(work, command=[sys.executable, "-c", "import time; print('READY', flush=True); time.sleep(300)"],
               mpi="mpich")
    proc = subprocess.Popen(["salloc", "-N", "3", *MNP, "--grace", "1", str(job)], env={
        **slurm.env, "MNP_HOME": str(work / "home")}, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True)
    try:
        agent = _wait_for_agent(slurm, 1)
        os.kill(agent, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 255, err
    assert "node 1 lost: its agent exited (status 137)" in err, err


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _wait_for_agent(slurm: SlurmNodes, node: int, timeout: float = 60) -> int:
    """The pid (here) of node ``node``'s agent once its rank runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        agent = rank = None
        for pid in slurm.node_pids(node):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"mnp.cluster.srun_task" in cmd and _comm(pid) != "mnp-watchdog":  # its fork has the same argv
                agent = pid
            elif b"READY" in cmd:
                rank = pid
        if agent and rank:
            return agent
        time.sleep(0.1)
    raise AssertionError(f"no agent with a running rank on node {node}")


@pytest.mark.parametrize("sig,code", [("INT", 130), ("KILL", 137)])
def test_interrupted_or_killed_mnp_leaves_no_step(slurm: SlurmNodes, work: Path, sig: str, code: int) -> None:
    """Inside one sbatch job, mnp gets SIGINT (Ctrl-C: exit 130, it stops everything itself) or SIGKILL (srun's
    stdin closes with it, every agent sees that and stops) mid-job. With the allocation still held, the job's own
    squeue must show no step of mnp's within a few seconds, and no agent or rank may be left on any node."""
    job = _job(work, command=[sys.executable, "-c", "import time; print('READY', flush=True); time.sleep(300)"])
    script = work / "batch.sh"
    script.write_text(
        f"#!/bin/bash\nexport MNP_HOME={work / 'home'}\ncd {ROOT}\n"
        f"{' '.join(MNP)} --grace 1 {job} > {work / 'mnp.out'} 2>&1 &\nmnp=$!\n"
        f"for i in $(seq 300); do grep -q READY {work / 'mnp.out'} && break; sleep 0.1; done\n"
        f"kill -{sig} $mnp; wait $mnp; echo \"MNP_EXIT=$?\"\n"
        "steps() { squeue -h -s -j $SLURM_JOB_ID -o %i | grep -v -e batch -e extern; }\n"
        "for i in $(seq 100); do [ -z \"$(steps)\" ] && break; sleep 0.1; done\n"
        "echo \"STEPS=$(steps | tr '\\n' ' ')\"; echo \"AFTER=$i\"\n")
    p = slurm.run(["sbatch", "--parsable", "-N", "2", f"--output={work / 'out.txt'}", str(script)], cwd=str(work))
    assert p.returncode == 0, p.stderr
    fields = slurm.wait_job(p.stdout.strip().split(";")[0])
    out = (work / "out.txt").read_text()
    mnp_out = (work / "mnp.out").read_text()
    assert fields["JobState"] == "COMPLETED", (fields, out)
    assert f"MNP_EXIT={code}" in out, out + mnp_out
    assert "STEPS=\n" in out, out  # every step of mnp's ended while the allocation was still held
    if sig == "INT":
        assert "interrupted by SIGINT" in mnp_out and "STEPS=\nAFTER=1\n" in out, out + mnp_out  # at once


def test_via_ssh_inside_the_allocation(slurm: SlurmNodes, work: Path) -> None:
    p = _salloc(slurm, work, 2, ["--via", "ssh", *slurm.ssh_args(), str(_job(work))])
    assert p.returncode == 0, p.stderr
    recs = _hellos(p.stdout)
    assert len(recs) == 2 and {r["agent_parent"] for r in recs} == {"sshd"}, recs


def test_bad_remote_python_is_one_line_naming_the_node(slurm: SlurmNodes, work: Path) -> None:
    p = _salloc(slurm, work, 2, ["--remote-python", "/opt/none/python3", str(_job(work))])
    assert p.returncode == 1, p.stderr
    last = p.stderr.strip().splitlines()
    line = next(ln for ln in last if ln.startswith("mnp: error:"))
    assert line in ("mnp: error: node0: Python not found at /opt/none/python3 (set --remote-python)",
                    "mnp: error: node1: Python not found at /opt/none/python3 (set --remote-python)"), p.stderr
    assert "Traceback" not in p.stderr


def test_via_srun_outside_an_allocation_is_a_usage_error(tmp_path: Path, mnp_home: Path) -> None:
    env = {k: "" for k in os.environ if k.startswith("SLURM_")}
    p = run_mnp(["launch", "--via", "srun", str(_job(tmp_path))], mnp_home, env=env)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1].startswith("mnp: error: --via srun: not inside a Slurm allocation")
    p = run_mnp(["launch", "--via", "srun", "--hosts", "a,b", str(_job(tmp_path))], mnp_home,
                env={**env, "SLURM_JOB_ID": "7"})
    assert p.returncode == 2 and "--via srun: srun starts agents on the Slurm allocation's nodes only" in p.stderr


def test_pool_through_srun_inside_the_allocation(slurm: SlurmNodes, work: Path) -> None:
    """`mnp pool start` inside an allocation: pool agents as the tasks of one srun step that outlives the command;
    two jobs --via pool run on agents forked by them (the agent's parent is the pool agent, not slurmstepd), with
    no Slurm variable of the pool's step; `mnp pool stop` ends the step (the fixture checks: no step, no agent)."""
    job = _job(work)
    mnp = f"{sys.executable} -m mnp"
    script = (f"set -e\n{mnp} pool start --json\n{mnp} pool status\n{mnp} launch --via pool {job}\n"
              f"{mnp} launch --via pool {job}\n{mnp} pool stop\n")
    p = slurm.run(["salloc", "-N", "3", "bash", "-c", script], timeout=180, cwd=str(ROOT),
                  env={"MNP_HOME": str(work / "home")})
    assert p.returncode == 0, p.stderr
    started = json.loads(p.stdout.splitlines()[0])
    assert [(h["host"], h["state"]) for h in started["hosts"]] == [("node0", "started"), ("node1", "started"),
                                                                   ("node2", "started")], p.stdout
    assert sum(line.startswith("node") and "  up  pid" in line for line in p.stdout.splitlines()) == 3, p.stdout
    recs = _hellos(p.stdout)
    assert [r["rank"] for r in recs] == [0, 0, 1, 1, 2, 2], recs  # two jobs of three ranks
    assert {r["agent_parent"] for r in recs} == {"mnp-pool"}, recs  # forked by the pool agent, not by slurmstepd
    assert {tuple(r["slurm_env"]) for r in recs} == {("SLURM_CONF",)}
    assert not list((work / "home").glob("pool-srun-*.out"))  # removed with the pool
    assert "Traceback" not in p.stderr
    ready = [line for line in p.stderr.splitlines() if "hosts ready" in line]
    assert ready and ready[-1] == "mnp: hosts ready 3/3" and len(ready) == len(set(ready)), ready  # when it moves
    assert re.search(r"^front: pid \d+, 0 job\(s\) so far", p.stdout, re.M), p.stdout  # this machine's front
