"""The mpirun back-end for real: Open MPI 5 (PyPI wheel), Open MPI 4 (Debian), MPICH's Hydra, with their daemons
started through mnp's control plane on isolated local nodes; C programs built with each MPI's mpicc."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import JOBS, ROOT, run_mnp, write_job
from mnp.launch.detect import detect_mpi
from mnp.node.rsh import parse_args

OMPI_PY = ROOT / ".venv-ompi" / "bin" / "python"
MPICH_CC = Path(sys.executable).parent / "mpicc"
OMPI_CC = ROOT / ".venv-ompi" / "bin" / "mpicc"
DEBIAN_CC = Path("/usr/bin/mpicc")
needs_ompi = pytest.mark.skipif(not OMPI_PY.exists(), reason=".venv-ompi (Open MPI wheel) not set up: ./setup.sh")


@pytest.mark.parametrize("argv,host,command", [
    (["node1", "prted", "--x", "1"], "node1", "prted --x 1"),
    (["-x", "10.0.0.2", "/p/hydra_pmi_proxy", "--control-port", "h:1"], "10.0.0.2",
     "/p/hydra_pmi_proxy --control-port h:1"),
    (["-o", "BatchMode=yes", "-p", "22", "root@n3", "orted"], "n3", "orted"),
])
def test_rsh_arguments_like_ssh(argv: list[str], host: str, command: str) -> None:
    assert parse_args(argv) == (host, command)


@needs_ompi
def test_detect_mpi_from_python_environment() -> None:
    assert detect_mpi([str(OMPI_PY)]).family == "openmpi"
    assert detect_mpi([sys.executable]).family == "mpich"
    assert detect_mpi(["/no/such/program"]).family == "mpich"


def _envs(out: str) -> list[dict]:
    return [json.loads(ln.split("ENV ", 1)[1]) | {"prefix": ln.split("ENV", 1)[0].strip()}
            for ln in out.splitlines() if "ENV {" in ln]


@needs_ompi
@pytest.mark.namespaces
def test_open_mpi_wheel_mpi4py_across_nodes(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "ompi.yaml", nodes=3, ranks_per_node=2, transport="tcp",
                    command=[str(OMPI_PY), str(JOBS / "envdump.py")])
    p = run_mnp(["launch", "--json", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr
    recs = _envs(p.stderr)
    assert sorted(r["rank"] for r in recs) == list(range(6)) and {r["size"] for r in recs} == {6}
    assert len({r["host"] for r in recs}) == 3
    for r in recs:
        node = int(r["env"]["MNP_NODE_INDEX"])
        assert r["rank"] // 2 == node and r["prefix"] == f"[node {node} rank {r['rank']}]"
        assert r["env"]["MNP_LOCAL_RANK"] == str(r["rank"] % 2)
        assert r["env"]["AWS_BATCH_JOB_NODE_INDEX"] == str(node)
    st = json.loads(run_mnp(["status", "--json", json.loads(p.stdout)["job_id"]], mnp_home).stdout)
    assert st["info"]["mpi"]["family"] == "openmpi" and st["info"]["mpi"]["launcher"] == "mpirun"


@needs_ompi
@pytest.mark.namespaces
def test_open_mpi_failing_rank_exit_code(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "f.yaml", nodes=2, ranks_per_node=2, command=[str(OMPI_PY), str(JOBS / "fail_rank.py")],
                    env={"FAIL_RANK": 3, "FAIL_CODE": 6})
    p = run_mnp(["launch", "--grace", "1", str(job)], mnp_home)
    assert p.returncode == 6, p.stderr
    assert "mpirun" in p.stderr.strip().splitlines()[-1]


def test_open_mpi_cannot_use_pmi(tmp_path: Path, mnp_home: Path) -> None:
    job = write_job(tmp_path / "x.yaml", mpi="openmpi", launcher="pmi", command="true")
    p = run_mnp(["launch", str(job)], mnp_home)
    assert p.returncode == 2 and "launcher: Open MPI cannot be started by PMI-1" in p.stderr


@pytest.mark.namespaces
def test_hydra_mpiexec_selectable(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "h.yaml", nodes=2, ranks_per_node=2, launcher="mpirun", transport="tcp",
                    command=[sys.executable, str(JOBS / "envdump.py")])
    p = run_mnp(["launch", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr
    recs = _envs(p.stdout)
    assert sorted(r["rank"] for r in recs) == [0, 1, 2, 3]
    assert {r["env"]["MNP_NODE_INDEX"] for r in recs if r["rank"] >= 2} == {"1"}  # each node keeps its env


def _build(cc: Path, tmp: Path, name: str) -> Path:
    out = tmp / name
    subprocess.run([str(cc), "-O2", "-o", str(out), str(ROOT / "bench" / "c" / "hello.c")], check=True)
    return out


COMPILERS = [("mpich", MPICH_CC, "MPICH"), ("openmpi5", OMPI_CC, "Open MPI v5"), ("openmpi4", DEBIAN_CC, "Open MPI v4")]


@pytest.mark.namespaces
@pytest.mark.parametrize("name,cc,lib", COMPILERS, ids=[c[0] for c in COMPILERS])
def test_c_program_built_with_each_mpicc(tmp_path: Path, mnp_home: Path, no_leftovers: None, name: str, cc: Path,
                                         lib: str) -> None:
    if not cc.exists():
        pytest.skip(f"{cc} not installed (./setup.sh installs it)")
    exe = _build(cc, tmp_path, f"hello-{name}")
    job = write_job(tmp_path / "c.yaml", nodes=2, ranks_per_node=2, transport="tcp", command=[str(exe)])
    p = run_mnp(["launch", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr + p.stdout
    lines = [ln for ln in p.stdout.splitlines() if "C-HELLO" in ln]
    assert len(lines) == 4 and all("size=4 sum=4" in ln for ln in lines)
    assert all(lib in ln for ln in lines), lines
    assert {ln.split("node=")[1].split()[0] for ln in lines} == {"0", "1"}
    assert shutil.which("ldd")
