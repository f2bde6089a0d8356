"""`mnp bench` end to end: the real command, real jobs on isolated local nodes, tiny sizes and step counts.

Asserted: OMB 7.4's text of the medians (header byte for byte as the stored OMB sample), then '# mnp:' lines with
each size's min and max over the runs; progress lines on stderr while jobs run (sizes, steps); --json's documented
keys, every figure with min/median/max; the fabric report's files (HTML naming each plot, PNG images); usage
errors exit 2 before any job.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_mnp

from bench.osu.omb import parse_omb

OMB = Path(__file__).parent / "omb"
FIGURE_KEYS = {"median", "min", "max", "spread", "values"}


@pytest.mark.namespaces
def test_osu_latency_shm_text_is_omb_and_spread_follows(mnp_home: Path, no_leftovers: None) -> None:
    p = run_mnp(["bench", "osu", "latency", "--transport", "shm", "-m", "16", "-i", "100", "-x", "10", "--reps", "2"],
                mnp_home, timeout=300)
    assert p.returncode == 0, p.stderr
    t = parse_omb(p.stdout.splitlines())
    assert t.header == parse_omb((OMB / "osu_latency.txt").read_text().splitlines()).header
    assert [s for s, _ in t.rows] == [1, 2, 4, 8, 16]
    meta = [ln for ln in t.trailer if ln.startswith("# mnp: ")]
    assert meta == t.trailer and "transport shm (1 node(s), 2 ranks)" in meta[1] and "call path numba" in meta[0]
    spread = {int(ln.split()[2]): (float(ln.split()[3]), float(ln.split()[4])) for ln in meta
              if ln.split()[2].isdigit()}
    assert sorted(spread) == [1, 2, 4, 8, 16]
    for size, vals in t.rows:  # the table's figure is the median of two runs: between their min and max
        lo, hi = spread[size]
        assert lo - 0.005 <= vals[0] <= hi + 0.005
    # progress while it ran: both runs, first and last size at least
    for run in (1, 2):
        assert f"osu latency numba shm run {run}/2: sizes 1/5" in p.stderr
        assert f"osu latency numba shm run {run}/2: sizes 5/5" in p.stderr


@pytest.mark.namespaces
def test_osu_bw_json_two_nodes_mpi4py(mnp_home: Path, no_leftovers: None) -> None:
    p = run_mnp(["bench", "osu", "bw", "--path", "mpi4py", "-m", "256", "-i", "5", "-x", "1", "-W", "8", "--reps",
                 "2", "--json"], mnp_home, timeout=300)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert {"benchmark", "osu_version", "title", "datatype", "column", "unit", "path", "transport", "reps", "jobs",
            "rows", "note", "env"} <= set(r)
    assert (r["benchmark"], r["path"], r["transport"], r["unit"], r["reps"]) == ("bw", "mpi4py", "tcp", "MB/s", 2)
    assert r["title"] == "OSU MPI Bandwidth Test v7.4" and len(r["jobs"]) == 2
    assert [row["size"] for row in r["rows"]] == [1 << k for k in range(9)]
    for row in r["rows"]:
        assert FIGURE_KEYS <= set(row) and len(row["values"]) == 2
        assert row["min"] <= row["median"] <= row["max"] and row["min"] > 0
    assert r["env"]["nodes"] == 2 and "mnp bench: osu bw mpi4py auto run 2/2: sizes 9/9" in p.stderr


@pytest.mark.namespaces
def test_osu_c_reference_path(mnp_home: Path, no_leftovers: None) -> None:
    p = run_mnp(["bench", "osu", "latency", "--path", "c", "--transport", "shm", "-m", "64", "-i", "100", "--reps",
                 "1", "--json"], mnp_home, timeout=300)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["path"] == "c" and r["transport"] == "shm" and r["env"]["mpi_library"].startswith("MPICH")
    assert [row["size"] for row in r["rows"]] == [1, 2, 4, 8, 16, 32, 64]
    assert list((mnp_home / "bench").glob("osu_ref-*"))  # built on demand, kept for the next run


@pytest.mark.namespaces
def test_md_json_and_steps_progress(mnp_home: Path, no_leftovers: None) -> None:
    p = run_mnp(["bench", "md", "--cells", "6", "--steps", "40", "--reps", "2", "--json"], mnp_home, timeout=300)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert (r["atoms"], r["ranks"], r["nodes"], r["transport"], r["reps"]) == (864, 2, 1, "shm", 2)
    for key in ("steps_per_s", "ns_per_day", "comm_share"):
        assert FIGURE_KEYS <= set(r[key]) and r[key]["min"] <= r[key]["median"] <= r[key]["max"]
    assert f"{r['e0_lj_unshifted_per_atom']:.7f}" == "-6.7733681"
    assert "md 2 rank(s) on 1 node(s) run 1/2: steps 2/40" in p.stderr and "run 2/2: steps 40/40" in p.stderr


@pytest.mark.namespaces
def test_fabric_report(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    out = tmp_path / "report"
    p = run_mnp(["bench", "fabric", "--paths", "numba,c", "--max-size", "64", "-i", "50", "--reps", "1",
                 "--md-ranks", "1,2", "--md-cells", "6", "--md-steps", "20", "--report", str(out), "--json"],
                mnp_home, timeout=600)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    got = {(f["benchmark"], f["transport"], f["path"]) for f in r["osu"]}
    assert got == {(b, t, c) for b in ("latency", "bw") for t in ("shm", "tcp") for c in ("numba", "c")}
    assert [(m["where"], m["ranks"], m["nodes"]) for m in r["md"]] == [("shm", 1, 1), ("shm", 2, 1), ("net", 2, 2)]
    assert r["facts"]["network"] == "tcp" and r["facts"]["mpi_library"].startswith("MPICH") and r["facts"]["cpus"]
    assert any(x.startswith("latency tcp/shm, numba") for x in r["ratios"])
    page = (out / "report.html").read_text()
    for png in ("latency.png", "bandwidth.png", "md.png"):
        assert f'src="{png}"' in page and (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Machine and mnp" in page and "MPICH" in page


def test_usage_errors_exit_2_before_any_job(mnp_home: Path) -> None:
    for args, said in ((["osu", "latency", "--transport", "shm", "--nodes", "2"], "--transport shm"),
                       (["osu", "latency", "-m", "8:4"], "-m"), (["fabric", "--paths", "fortran"], "--paths"),
                       (["osu", "pingpong"], "pingpong")):
        p = run_mnp(["bench", *args], mnp_home)
        assert p.returncode == 2 and said in p.stderr, (args, p.stderr)
        assert not (mnp_home / "mnp.db").exists() or "SUBMITTED" not in run_mnp(["list"], mnp_home).stdout


@pytest.mark.namespaces
def test_compare_modules_run_both_placements(mnp_home: Path, no_leftovers: None) -> None:
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {**os.environ, "MNP_HOME": str(mnp_home)}
    p = subprocess.run([sys.executable, "-m", "bench.osu.compare", "-m", "8", "-i", "200", "-x", "20", "--reps", "1"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT, env=env, check=False)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("# osu latency, network (tcp, 2 nodes x 1 rank) / shared memory (1 node x 2 ranks)")
    rows = [ln.split() for ln in lines[2:]]
    assert [int(r[0]) for r in rows] == [1, 2, 4, 8] and all(float(r[1]) > 0 for r in rows)
    p = subprocess.run([sys.executable, "-m", "bench.md.compare", "--cells", "6", "--steps", "20", "--reps", "1"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT, env=env, check=False)
    assert p.returncode == 0, p.stderr
    assert "(same system: yes)" in p.stdout
    rec = json.loads(p.stdout.split("MD-COMPARE-JSON ", 1)[1])
    assert rec["shm"]["nodes"] == 1 and rec["net"]["nodes"] == 2 and rec["ratio_steps_per_s_net_over_shm"] > 0


@pytest.mark.namespaces
def test_compare_against_c_and_lammps(mnp_home: Path, no_leftovers: None) -> None:
    """The alternating comparisons: each Python call path against the C reference, and bench.md against
    LAMMPS's in.lj (when Debian's ``lmp`` is installed) with its same-work checks."""
    import os
    import shutil
    import subprocess
    import sys

    from conftest import ROOT

    env = {**os.environ, "MNP_HOME": str(mnp_home)}
    p = subprocess.run([sys.executable, "-m", "bench.osu.compare", "--against-c", "-m", "8", "-i", "200", "-x",
                        "20", "--reps", "2"], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
                       check=False)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("# osu latency (1 node x 2 ranks, shared memory): each path / C")
    rows = [ln.split() for ln in lines[2:]]
    assert [int(r[0]) for r in rows] == [1, 2, 4, 8]
    assert all(float(x) > 0 for r in rows for x in r[1:4])
    if shutil.which("lmp") is None:
        pytest.skip("no lmp (Debian's lammps package) for the LAMMPS half")
    p = subprocess.run([sys.executable, "-m", "bench.md.compare", "--lammps", "--cells", "6", "--steps", "40",
                        "--reps", "1"], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    rec = json.loads(p.stdout.split("MD-LAMMPS-JSON ", 1)[1])
    assert rec["same_epair0"] and rec["same_work"] and rec["atoms"] == 864 and rec["steps"] == 40
    assert f"{rec['epair0_md']:.7f}" == f"{rec['epair0_lammps']:.7f}" == "-6.7733681"
    assert rec["pairs_dev"] < 0.01 and rec["per_core"]["median"] > 0
    assert set(rec["efficiency"]) == {"md", "lammps"} and len(rec["runs"]["md"]) == 2
    assert "per core, bench.md / LAMMPS" in p.stdout and "2-rank strong-scaling efficiency" in p.stdout
