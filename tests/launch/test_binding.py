"""CPU binding for real: ranks on local nodes print the CPUs they may use (tests/jobs/affinity.py), and what they
see is checked against the policy asked for and against what ``--explain`` said it chose -- MPICH through mnp's
PMI-1 (the agent binds), Open MPI through its mpirun (the rank wrapper binds, the MPI's own binding off), and
the Open MPI launchers' own flags as mnp spells them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, run_mnp, write_job

from mnp.launch.mpirun import binding_flags
from mnp.placement import Policy, cpu_list

AFFINITY = ROOT / "tests" / "jobs" / "affinity.py"
OMPI_PY = ROOT / ".venv-ompi" / "bin" / "python"
IMPI_PY = ROOT / ".venv-impi" / "bin" / "python"
needs_ompi = pytest.mark.skipif(not OMPI_PY.exists(), reason=".venv-ompi (Open MPI wheel) not set up: ./setup.sh")


def _ranks(stdout: str) -> dict[int, dict[str, Any]]:
    out = {}
    for line in stdout.splitlines():
        if "AFFINITY " in line:
            rec = json.loads(line.split("AFFINITY ", 1)[1])
            rec["siblings"] = {int(k): v for k, v in rec["siblings"].items()}
            out[rec["rank"]] = rec
    return out


def _explained(stderr: str) -> dict[int, str]:
    """rank -> the CPUs --explain said it is bound to."""
    out = {}
    for line in stderr.splitlines():
        m = re.match(r"mnp: binding node \d+ \(CPUs [^)]*\): rank (.*)$", line)
        if m:
            out.update({int(r): c for r, c in (x.split("->") for x in m.group(1).split())})
    return out


def _run(home: Path, args: list[str], python: str = sys.executable, nodes: int = 2,
         ranks: int = 4) -> subprocess.CompletedProcess[str]:
    p = run_mnp(["run", "-N", str(nodes), "-n", str(ranks), "--explain", *args, python, str(AFFINITY)], home)
    assert p.returncode == 0, p.stderr
    return p


def _one_core(rec: dict[str, Any]) -> bool:
    """The rank may use exactly one core of its node: that core's hyperthreads within the node's CPUs."""
    first = rec["cpus"][0]
    return rec["cpus"] == sorted(set(rec["siblings"][first]) & set(rec["node_cpus"]))


@pytest.mark.namespaces
@pytest.mark.parametrize("bind", ["core", "none"])
@pytest.mark.parametrize("mapping", ["block", "cyclic"])
def test_two_nodes_two_ranks(mnp_home: Path, no_leftovers: None, bind: str, mapping: str) -> None:
    p = _run(mnp_home, ["--bind-to", bind, "--map-by", mapping])
    recs = _ranks(p.stdout)
    assert sorted(recs) == [0, 1, 2, 3], p.stdout
    for r, rec in recs.items():
        assert rec["node"] == (r // 2 if mapping == "block" else r % 2), recs
        assert set(rec["cpus"]) <= set(rec["node_cpus"]), rec  # never outside its node's own CPUs
    if bind == "none":
        assert all(rec["cpus"] == rec["node_cpus"] for rec in recs.values()), recs
        assert "mnp: binding node" not in p.stderr and "none -- --bind-to none" in p.stderr
        return
    assert all(_one_core(rec) for rec in recs.values()), recs
    said = _explained(p.stderr)
    assert said == {r: cpu_list(rec["cpus"]) for r, rec in recs.items()}, (said, recs)
    shared_core = any(a != b and recs[a]["node"] == recs[b]["node"] and recs[a]["cpus"] == recs[b]["cpus"]
                      for a in recs for b in recs)
    warnings = [x for x in p.stderr.splitlines() if x.startswith("mnp: warning: binding: ")]
    assert len(warnings) == (1 if shared_core else 0), p.stderr
    job = re.search(r"mnp: job (\w+)", p.stderr).group(1)  # type: ignore[union-attr]
    status = run_mnp(["status", job], mnp_home).stdout
    assert f"binding   core, mapped {mapping}:cyclic" in status, status  # srun's block and cyclic: cyclic within
    kept = json.loads(run_mnp(["status", "--json", job], mnp_home).stdout)["info"]["binding"]
    assert kept["ranks"] == {str(r): cpu_list(rec["cpus"]) for r, rec in recs.items()} and kept["by"] == "mnp"


@pytest.mark.namespaces
def test_core_against_none_on_one_node(mnp_home: Path, no_leftovers: None) -> None:
    """One node owns this machine's CPUs: bound to core, its 2 ranks take two different cores; unbound, both may
    use all of them."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    core = _ranks(_run(mnp_home, ["--bind-to", "core"], nodes=1, ranks=2).stdout)
    assert all(_one_core(rec) for rec in core.values()) and not set(core[0]["cpus"]) & set(core[1]["cpus"]), core
    none = _ranks(_run(mnp_home, ["--bind-to", "none"], nodes=1, ranks=2).stdout)
    assert none[0]["cpus"] == none[1]["cpus"] == none[0]["node_cpus"] and len(none[0]["cpus"]) >= 2, none


@pytest.mark.namespaces
@pytest.mark.parametrize("python", [pytest.param(Path(sys.executable), id="mpich"),
                                    pytest.param(IMPI_PY, id="impi")])
def test_binding_survives_mpi_init(mnp_home: Path, no_leftovers: None, python: Path) -> None:
    """Ranks bound by the agent, looked at after MPI_Init: MPICH leaves them so, and Intel MPI, which pins ranks
    in its library, is told not to (each rank keeps its socket: here the node's whole package)."""
    if not python.exists():
        pytest.skip(f"{python} not set up")
    for bind in ("core", "socket"):
        p = _run(mnp_home, ["--bind-to", bind, "-x", "AFFINITY_MPI=1"], python=str(python), nodes=1, ranks=2)
        recs = _ranks(p.stdout)
        assert sorted(recs) == [0, 1] and _explained(p.stderr) == {r: cpu_list(x["cpus"]) for r, x in recs.items()}
        if bind == "socket":
            packages = {int(Path(f"/sys/devices/system/cpu/cpu{c}/topology/physical_package_id").read_text())
                        for c in recs[0]["node_cpus"]}
            if len(packages) == 1:
                assert all(x["cpus"] == x["node_cpus"] for x in recs.values()), recs


@pytest.mark.namespaces
def test_default_for_mpich_is_hydras_none(mnp_home: Path, no_leftovers: None) -> None:
    p = _run(mnp_home, [], nodes=2, ranks=2)
    recs = _ranks(p.stdout)
    assert all(rec["cpus"] == rec["node_cpus"] for rec in recs.values()), recs
    assert "mnp: binding: none -- Hydra's default" in p.stderr


@pytest.mark.namespaces
@needs_ompi
@pytest.mark.parametrize("args", [["--bind-to", "core"], []], ids=["core", "default"])
def test_open_mpi_ranks_bound_within_their_node(mnp_home: Path, no_leftovers: None, args: list[str]) -> None:
    """Open MPI through mnp's mpirun back-end, 2 local nodes: left to itself Open MPI bound node 1's rank to
    CPU 0, outside node 1's CPUs. Here its own binding is off and each rank's wrapper binds it within its node;
    the default (2 ranks: Open MPI binds to core) is the same, made safe."""
    p = _run(mnp_home, args, python=str(OMPI_PY), nodes=2, ranks=2)
    recs = _ranks(p.stdout)
    assert sorted(recs) == [0, 1], p.stdout
    for r, rec in recs.items():
        assert rec["node"] == r and set(rec["cpus"]) <= set(rec["node_cpus"]) and _one_core(rec), recs
    assert _explained(p.stderr) == {r: cpu_list(rec["cpus"]) for r, rec in recs.items()}
    assert "taskset in each rank's wrapper" in p.stderr and "PRTE_MCA_hwloc_default_binding_policy=none" in p.stderr
    if not args:
        assert "Open MPI's default: core for up to 2 ranks" in p.stderr


@pytest.mark.namespaces
@needs_ompi
def test_open_mpi_cyclic_over_nodes(mnp_home: Path, no_leftovers: None) -> None:
    p = _run(mnp_home, ["--map-by", "node", "--bind-to", "none"], python=str(OMPI_PY), nodes=2, ranks=4)
    recs = _ranks(p.stdout)
    assert {r: rec["node"] for r, rec in recs.items()} == {0: 0, 1: 1, 2: 0, 3: 1}, recs


_LAUNCHERS = [pytest.param(Path("/usr/bin/mpirun"), 4, id="openmpi4"),
              pytest.param(ROOT / ".venv-ompi" / "bin" / "mpirun", 5, id="openmpi5")]


@pytest.mark.parametrize("mpirun,major", _LAUNCHERS)
def test_open_mpi_takes_mnps_binding_flags(tmp_path: Path, mpirun: Path, major: int) -> None:
    """The flags mnp gives Open MPI's launcher where it binds itself (nodes of different machines), run by that
    launcher on this host: core binds each rank to its own core, none leaves them the whole set."""
    if not mpirun.exists():
        pytest.skip(f"{mpirun} not installed")
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "PRTE_ALLOW_RUN_AS_ROOT": "1", "PRTE_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    (tmp_path / "hosts").write_text("localhost slots=2\n")
    seen = {}
    for bind in ("core", "none"):
        flags = binding_flags("openmpi", major, "block", Policy(bind))
        p = subprocess.run([str(mpirun), "--hostfile", str(tmp_path / "hosts"), "-np", "2", *flags, "sh", "-c",
                            "grep Cpus_allowed_list /proc/self/status"], capture_output=True, text=True, env=env,
                           timeout=120)
        assert p.returncode == 0, (flags, p.stderr)
        seen[bind] = sorted(line.split()[-1] for line in p.stdout.splitlines() if "Cpus_allowed_list" in line)
    assert len(seen["core"]) == 2 and seen["core"][0] != seen["core"][1], seen
    assert seen["none"] == [cpu_list(cpus)] * 2, seen


@pytest.mark.namespaces
def test_dry_run_shows_each_ranks_cpus(mnp_home: Path) -> None:
    p = run_mnp(["run", "-N", "2", "-n", "4", "--bind-to", "core", "--map-by", "cyclic", "--dry-run", "--json",
                 "true"], mnp_home)
    assert p.returncode == 0, p.stderr
    plan = json.loads(p.stdout)
    assert [n["ranks"] for n in plan["nodes"]] == [[0, 2], [1, 3]]
    b = plan["binding"]
    assert b["bind_to"] == "core" and b["map_by"] == "cyclic:cyclic" and b["by"] == "mnp"
    assert set(b["ranks"]) == {"0", "1", "2", "3"} and b["ranks"]["0"] == b["ranks"]["2"]
    text = run_mnp(["run", "-N", "2", "-n", "4", "--bind-to", "core", "--dry-run", "true"], mnp_home).stdout
    assert "binding    core, mapped block:block" in text and re.search(r"node 0 \(CPUs [^)]+\): rank 0->", text)


@pytest.mark.parametrize("args,expect", [
    (["--bind-to", "wire"], "--bind-to"),
    (["--map-by", "diagonal"], "--map-by"),
])
def test_bad_options_are_one_line(mnp_home: Path, args: list[str], expect: str) -> None:
    p = run_mnp(["run", *args, "true"], mnp_home)
    assert p.returncode == 2 and "Traceback" not in p.stderr and expect in p.stderr, p.stderr


@pytest.mark.parametrize("field,value", [("bind_to", "wire"), ("map_by", "diagonal"), ("bind_to", 3)])
def test_bad_job_fields_name_the_field(tmp_path: Path, mnp_home: Path, field: str, value: object) -> None:
    job = write_job(tmp_path / "j.yaml", command="true", **{field: value})
    p = run_mnp(["launch", str(job)], mnp_home)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and f"{field}: " in lines[0] and "Traceback" not in p.stderr, p.stderr


def test_hydra_cannot_deal_ranks_round_robin(tmp_path: Path, mnp_home: Path) -> None:
    """Refused before any node is made, one line naming the field, no record."""
    job = write_job(tmp_path / "j.yaml", command=[sys.executable, "-c", "pass"], nodes=2, ranks_per_node=2,
                    launcher="mpirun", mpi="mpich", map_by="node")
    p = run_mnp(["launch", str(job)], mnp_home)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "map_by: node: Hydra's mpiexec cannot" in lines[0], p.stderr
    assert "launcher: pmi" in lines[0]
    assert json.loads(run_mnp(["list", "--json"], mnp_home).stdout) == []
