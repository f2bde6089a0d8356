"""bench.md end to end: short MD runs through the real `mnp launch` on isolated local nodes.

Small fcc lattices and few steps keep each launch to a few seconds. What is asserted: the step-0 per-atom LJ
energy of a perfect fcc lattice at rho* 0.8442, r_c 2.5 (it depends only on the lattice: LAMMPS in.lj prints
-6.7733681 for 20^3 cells) on one rank and on two ranks across two nodes, equal to 1e-9 relative; the same for the
reaction-field energy; the trajectory after 50 steps the same however the atoms are decomposed (halo exchange and
migration are right); a bounded total-energy drift; the GROMACS-style Performance line and a parseable MD-JSON
record from rank 0 only; and a clear error when subdomains are thinner than r_c + skin.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import rank0_record, run_mnp, write_job

pytestmark = pytest.mark.namespaces

LAMMPS_EPAIR = -6.7733681            # in.lj step 0, 8 significant digits
LJ_LATTICE = -6.77336805325          # this code, 1 rank (any lattice size): the same to 1e-11
RF_LATTICE = -0.17354499606857       # reaction field, q = +-0.5, eps_r 1, eps_rf inf, incl. the self term


def _launch(tmp_path: Path, home: Path, name: str, nodes: int, rpn: int, args: list[str],
            transport: str = "tcp") -> subprocess.CompletedProcess[str]:
    job = write_job(tmp_path / f"{name}.yaml", name=name, nodes=nodes, ranks_per_node=rpn,
                    command=["python", "-m", "bench.md", *args], env={"OMP_NUM_THREADS": "1"}, mpi="mpich",
                    transport=transport, timeout=120)
    return run_mnp(["launch", "--label", str(job)], home)  # one rank too: every line labelled


def _record(p: subprocess.CompletedProcess[str]) -> tuple[list[str], dict]:
    return rank0_record(p, "MD-JSON")


def _check_common(body: list[str], r: dict, ranks: int, nodes: int) -> None:
    perf = [line for line in body if line.startswith("Performance:")]
    assert len(perf) == 1 and len(perf[0].split()) == 3, body
    ns_day, hour_ns = map(float, perf[0].split()[1:])
    # the line prints 2 decimals: compare within half of its last digit
    assert ns_day == pytest.approx(r["ns_per_day"], rel=1e-3, abs=0.006)
    assert hour_ns == pytest.approx(24 / r["ns_per_day"], rel=1e-3, abs=0.006)
    assert any("steps/s" in line and "atom-steps/s" in line for line in body)
    for section in ("neighbour search", "force", "comm. coord.", "wait + comm. E", "update"):
        assert any(line.strip().startswith(section) for line in body), section
    assert (r["ranks"], r["nodes"], len(r["hosts"])) == (ranks, nodes, nodes)
    assert r["steps_per_s"] > 0 and r["atom_steps_per_s"] == pytest.approx(r["steps_per_s"] * r["atoms"])
    assert sum(r["timings_mean_s"].values()) == pytest.approx(r["wall_s"], rel=0.05)
    assert f"{r['e0_lj_unshifted_per_atom']:.7f}" == f"{LAMMPS_EPAIR:.7f}"
    assert r["e0_lj_unshifted_per_atom"] == pytest.approx(LJ_LATTICE, rel=1e-9)
    assert abs(r["drift_rel"]) < 2e-4 and r["drift_max_abs_per_atom"] < 5e-3


def test_one_rank_perfect_lattice_energy_and_drift(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    body, r = _record(_launch(tmp_path, mnp_home, "md-1", 1, 1, ["--cells", "6", "--steps", "50"]))
    _check_common(body, r, 1, 1)
    assert r["atoms"] == 864 and r["decomposition"] == [1, 1, 1] and r["steps"] == 50
    # one node: the path is shared memory, whatever FI_PROVIDER mnp set for the network (the job asked for tcp)
    assert r["transport"] == "shm" and "transport shm" in body[1] and "FI_PROVIDER" not in body[1]


def test_two_nodes_same_energies_and_trajectory(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    args = ["--cells", "6", "--steps", "50", "--rf"]
    body, net = _record(_launch(tmp_path, mnp_home, "md-net", 2, 1, args))
    _check_common(body, net, 2, 2)
    assert net["decomposition"] == [2, 1, 1] and net["fi_provider"] == "tcp"
    assert net["e0_per_atom"]["rf"] == pytest.approx(RF_LATTICE, rel=1e-9)
    assert all(r["atoms"] > 0 and r["ghosts"] > 0 for r in net["per_rank"])
    _, one = _record(_launch(tmp_path, mnp_home, "md-one", 1, 1, args))
    assert one["e0_per_atom"]["pot"] == pytest.approx(net["e0_per_atom"]["pot"], rel=1e-9)
    # same atoms, same velocities, different decomposition: 50 steps later still the same state (round-off only)
    for key in ("total", "pot", "temp"):
        assert one["e_end_per_atom"][key] == pytest.approx(net["e_end_per_atom"][key], rel=1e-8), key


def test_subdomain_thinner_than_cutoff_is_an_error(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    p = _launch(tmp_path, mnp_home, "md-thin", 1, 2, ["--cells", "3", "--steps", "5"], transport="shm")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "less than r_c + skin" in p.stdout + p.stderr
