"""Intel MPI (the PyPI ``impi-rt`` wheel in .venv-impi) through mnp: ``mpi: auto`` tells it from MPICH, gives it
its own transport variables, and its ranks run through mnp's direct PMI-1 on isolated local nodes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, run_mnp, write_job

IMPI_PY = ROOT / ".venv-impi" / "bin" / "python"
pytestmark = pytest.mark.namespaces  # .venv-impi is made by setup.sh: a missing one is a failure, not a skip

JOB = ("import json, os; from mpi4py import MPI; c = MPI.COMM_WORLD\n"
       "keys = ['I_MPI_FABRICS', 'I_MPI_OFI_PROVIDER', 'FI_PROVIDER', 'MPIR_CVAR_CH4_NETMOD', 'MNP_NODE_INDEX']\n"
       "print('IMPI', json.dumps({'rank': c.rank, 'size': c.size, 'sum': c.allreduce(c.rank + 1),\n"
       "      'lib': MPI.Get_library_version().split(' for ')[0], 'env': {k: os.environ.get(k) for k in keys}}),\n"
       "      flush=True)\n")


def test_intel_mpi_two_nodes(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "i.yaml", nodes=2, ranks_per_node=2, command=[str(IMPI_PY), "-c", JOB])
    p = run_mnp(["launch", "--json", "--explain", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr[-3000:]
    recs = [json.loads(ln.split("IMPI ", 1)[1]) for ln in p.stderr.splitlines() if "IMPI {" in ln]
    assert sorted(r["rank"] for r in recs) == [0, 1, 2, 3]
    assert {r["size"] for r in recs} == {4} and {r["sum"] for r in recs} == {10}
    assert all(r["lib"].startswith("Intel(R) MPI Library") for r in recs)
    for r in recs:
        assert r["env"]["MNP_NODE_INDEX"] == str(r["rank"] // 2)
        assert r["env"]["I_MPI_FABRICS"] == "shm:ofi" and r["env"]["I_MPI_OFI_PROVIDER"] == "tcp"
        assert r["env"]["FI_PROVIDER"] == "tcp" and r["env"]["MPIR_CVAR_CH4_NETMOD"] is None
    assert "Intel MPI shm:ofi over libfabric tcp" in p.stderr
    st = json.loads(run_mnp(["status", "--json", json.loads(p.stdout)["job_id"]], mnp_home).stdout)
    assert st["info"]["mpi"]["family"] == "impi" and st["info"]["mpi"]["launcher"] == "pmi"
    assert {s["mpi"] for s in st["info"]["shm"].values()} == {16 << 20}  # Intel MPI's part for 2 ranks


def test_intel_mpi_one_node_shared_memory_only(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "i.yaml", nodes=1, ranks_per_node=2, command=[str(IMPI_PY), "-c", JOB])
    p = run_mnp(["launch", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr[-3000:]
    recs = [json.loads(ln.split("IMPI ", 1)[1]) for ln in p.stdout.splitlines() if "IMPI {" in ln]
    assert len(recs) == 2 and {r["sum"] for r in recs} == {3}
    assert all(r["env"]["I_MPI_FABRICS"] == "shm" and r["env"]["FI_PROVIDER"] is None for r in recs)
