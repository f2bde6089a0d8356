"""bench/mpi_compare.py end to end, small: each MPI family's program built with its own wrapper and run through the
real `mnp launch` on two isolated local nodes, and Debian's LAMMPS and GROMACS across two nodes."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("mpi_compare", ROOT / "bench" / "mpi_compare.py")
assert _spec is not None and _spec.loader is not None
mc = importlib.util.module_from_spec(_spec)
sys.modules["mpi_compare"] = mc
_spec.loader.exec_module(mc)

EXPECT = {"mpich": ("mpich", "pmi", "MPICH"), "openmpi5": ("openmpi", "mpirun", "Open MPI v5."),
          "openmpi4": ("openmpi", "mpirun", "Open MPI v4."), "impi": ("impi", "pmi", "Intel(R) MPI Library")}


@pytest.mark.noroot
def test_ratios_against_mpich() -> None:
    runs = {"mpich": [{"lat8_us": 8.0, "bw1m_MBps": 3000.0}, {"lat8_us": 10.0, "bw1m_MBps": 2000.0},
                      {"lat8_us": 9.0, "bw1m_MBps": 2400.0}],
            "openmpi5": [{"lat8_us": 12.0, "bw1m_MBps": 2000.0}],
            "impi": [{"lat8_us": 18.0, "bw1m_MBps": 2400.0}]}
    t = mc.ratios(runs)
    assert t["mpich"] == {"lat8_us": 9.0, "bw1m_MBps": 2400.0, "lat_ratio": 1.0, "bw_ratio": 1.0,
                          "targets_met": True}
    assert t["openmpi5"]["lat_ratio"] == pytest.approx(12 / 9) and t["openmpi5"]["bw_ratio"] == pytest.approx(1.2)
    assert t["openmpi5"]["targets_met"] is True  # both exactly at or inside their targets
    assert t["impi"]["lat_ratio"] == 2.0 and t["impi"]["targets_met"] is False
    assert "lat_ratio" not in mc.ratios({"impi": runs["impi"]})["impi"]  # no MPICH run: no ratio


@pytest.mark.namespaces
@pytest.mark.parametrize("name", list(EXPECT))
def test_each_family_between_two_nodes(tmp_path: Path, mnp_home: Path, no_leftovers: None, name: str) -> None:
    fam = mc.families()[name]
    if not fam.needs.exists():
        pytest.skip(f"{fam.needs} not installed (./setup.sh)")
    exe = mc.build(fam, tmp_path)
    r = mc.micro(fam, exe, mnp_home, tmp_path, lat_iters=300, bw_iters=1, timeout=120)
    family, launcher, lib = EXPECT[name]
    assert (r["family"], r["launcher"]) == (family, launcher)  # mnp detected the family from the binary
    assert r["library"].startswith(lib), r
    assert 0 < r["lat8_us"] < 1e5 and 0 < r["bw1m_MBps"] < 1e6


@pytest.mark.namespaces
@pytest.mark.skipif(not shutil.which("lmp"), reason="Debian's lammps is not installed (apt-get install lammps)")
def test_lammps_across_two_nodes(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    """in.lj through mnp on 2 nodes x 1 rank: step 0's E_pair is LAMMPS's published -6.7733681 per atom."""
    r = mc.lammps(mnp_home, tmp_path, 2, 1, steps=20, timeout=120)
    assert r["procs"] == 2 and r["epair0"] == -6.7733681 and r["steps_per_s"] > 0


@pytest.mark.namespaces
@pytest.mark.skipif(not (shutil.which("gmx_mpi") and shutil.which("gmx")),
                    reason="Debian's gromacs is not installed (apt-get install gromacs)")
def test_gromacs_across_two_nodes(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    tpr = mc.gromacs_system(tmp_path, box_nm=4.0, steps=200)
    r = mc.gromacs(mnp_home, tmp_path, tpr, 2, 1, timeout=120)
    assert r["ns_per_day"] > 0
    log = (tmp_path / "gmx-2x1.log").read_text()
    assert "Initializing Domain Decomposition on 2 ranks" in log  # one domain a node: it spanned both
