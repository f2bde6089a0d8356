"""bench.osu end to end: short OSU-style runs through the real `mnp launch` on isolated local nodes.

Tiny sizes and iteration counts keep each launch to a few seconds; what is asserted is the outcome a user reads:
OSU-format rows from rank 0 only, positive figures for every size, a parseable OSU-JSON line whose records match
the rows and name the call path and environment, and the numba path (the timing loop compiled, MPI called
through ctypes) giving the same sizes.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT, launch_module, rank0_record

LATENCY_SIZES = [0, 1, 2, 4, 8, 16, 32, 64]


def _launch(tmp_path: Path, home: Path, name: str, nodes: int, rpn: int, args: list[str],
            transport: str = "tcp") -> subprocess.CompletedProcess[str]:
    return launch_module(tmp_path, home, "bench.osu", name, nodes, rpn, args, transport)


def _table(p: subprocess.CompletedProcess[str]) -> tuple[list[str], dict]:
    """Rank 0's lines (no other rank may print), without the JSON line, and its one OSU-JSON record."""
    body, rec = rank0_record(p, "OSU-JSON")
    return [line for line in body if "OSU-JSON" not in line], rec


def _rows(body: list[str], columns: int = 1) -> list[tuple[int, list[float]]]:
    rows = []
    for line in body:
        if line.startswith("#"):
            continue
        size, *values = line.split()
        vals = [float(v) for v in values]
        assert line == f"{int(size):<10d}" + "".join(f"{v:20.2f}" for v in vals[:columns]) + \
            "".join(f"{int(v):12d}" for v in vals[columns:]), f"not OSU's %-10d%20.2f: {line!r}"
        rows.append((int(size), vals))
    return rows


@pytest.mark.namespaces
@pytest.mark.parametrize("path", ["mpi4py", "numba"])
def test_latency_two_nodes_osu_rows_and_json(tmp_path: Path, mnp_home: Path, no_leftovers: None, path: str) -> None:
    p = _launch(tmp_path, mnp_home, f"osu-lat-{path}", 2, 1, ["latency", "-m", "64", "-i", "200", "-x", "20",
                                                               "--path", path])
    body, rec = _table(p)
    assert body[0] == f"# OSU MPI Latency Test v7.4 (mnp Python port: bench.osu, call path {path})"
    assert body[1].startswith("# MPICH Version:") and "FI_PROVIDER=tcp, 2 node(s), 2 ranks" in body[1]
    assert body[2] == "# Size          Avg Latency(us)"
    rows = _rows(body)
    assert [s for s, _ in rows] == LATENCY_SIZES
    assert all(v[0] > 0 for _, v in rows)
    assert rec["benchmark"] == "latency" and rec["path"] == path and rec["unit"] == "us"
    assert rec["sizes"] == LATENCY_SIZES and rec["iterations"] == [200] * 8 and rec["warmup"] == [20] * 8
    # the table prints 2 decimals of the same values: equal within half of the last printed digit
    assert all(abs(a - b[0]) <= 0.005 + 1e-9 for a, (_, b) in zip(rec["values"], rows, strict=True))
    env = rec["env"]
    assert env["mpi_library"].startswith("MPICH") and env["fi_provider"] == "tcp" and env["netmod"] == "ofi"
    assert env["nodes"] == 2 and env["ranks"] == 2 and env["hosts"] == ["node0", "node1"]
    assert re.fullmatch(r"[0-9a-f]+", env["mnp_job_id"])
    if path == "numba":
        assert "/libmpi" in env["libmpi"] and env["numba"] and env["jit_s"] > 0


@pytest.mark.namespaces
@pytest.mark.parametrize("bench,path", [("bw", "mpi4py"), ("bw", "numba"), ("bibw", "mpi4py"), ("bibw", "numba")])
def test_bandwidth_within_one_node(tmp_path: Path, mnp_home: Path, no_leftovers: None, bench: str,
                                   path: str) -> None:
    p = _launch(tmp_path, mnp_home, f"osu-{bench}", 1, 2, [bench, "-m", "4096", "-i", "5", "-x", "1", "-W", "8",
                                                            "--path", path], transport="shm")
    body, rec = _table(p)
    title = "Bandwidth Test" if bench == "bw" else "Bi-Directional Bandwidth Test"
    assert body[0].startswith(f"# OSU MPI {title} v7.4") and body[2] == "# Size          Bandwidth (MB/s)"
    rows = _rows(body)
    assert [s for s, _ in rows] == rec["sizes"] == [1 << k for k in range(13)]  # 1 B .. 4 KiB
    # 1 B x 5 x 8 messages is 0.00 MB/s on a loaded machine in the table's 2 decimals: the record keeps 4
    assert all(v > 0 for v in rec["values"]) and rec["unit"] == "MB/s" and rec["path"] == path
    assert all(abs(v[0] - x) <= 0.01 for (_, v), x in zip(rows, rec["values"], strict=True))
    assert rec["env"]["nodes"] == 1 and rec["env"]["ranks"] == 2


@pytest.mark.namespaces
@pytest.mark.parametrize("path", ["mpi4py", "numba"])
def test_allreduce_2x2(tmp_path: Path, mnp_home: Path, no_leftovers: None, path: str) -> None:
    p = _launch(tmp_path, mnp_home, "osu-allreduce", 2, 2, ["allreduce", "-m", "1024", "-i", "50", "-x", "5", "-f",
                                                             "--path", path])
    body, rec = _table(p)
    assert body[0].startswith("# OSU MPI Allreduce Latency Test v7.4")
    assert body[2].split() == ["#", "Size", "Avg", "Latency(us)", "Min", "Latency(us)", "Max", "Latency(us)",
                               "Iterations"]
    rows = _rows(body, columns=3)
    assert [s for s, _ in rows] == rec["sizes"] == [4 << k for k in range(9)]  # one float32 .. 1 KiB
    for _, (avg, lo, hi, iters) in rows:
        assert 0 < lo <= avg <= hi and iters == 50
    assert all(lo <= avg <= hi for avg, lo, hi in zip(rec["values"], rec["min"], rec["max"], strict=True))
    assert rec["env"]["nodes"] == 2 and rec["env"]["ranks"] == 4 and rec["path"] == path


@pytest.mark.namespaces
def test_latency_needs_two_ranks(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    p = _launch(tmp_path, mnp_home, "osu-three", 1, 3, ["latency", "-m", "8"], transport="shm")
    assert p.returncode == 2, p.stderr
    assert "osu: error: latency needs exactly 2 ranks, this job has 3" in p.stderr
    assert "OSU-JSON" not in p.stdout


@pytest.mark.namespaces
def test_compare_network_over_shm_through_the_job_files(mnp_home: Path, no_leftovers: None) -> None:
    p = subprocess.run([sys.executable, "-m", "bench.osu.compare", "-m", "8", "-i", "500", "-x", "50"],
                       check=False, capture_output=True, text=True, timeout=240, cwd=ROOT,
                       env={**os.environ, "MNP_HOME": str(mnp_home)})
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("# osu latency, network (tcp, osu-latency.yaml) / shared memory")
    assert lines[1].split() == ["#", "Size", "tcp/shm"]
    ratios = {int(s): float(r) for s, r in (line.split() for line in lines[2:])}
    assert sorted(ratios) == [0, 1, 2, 4, 8]
    # Across isolated nodes the messages cross a veth pair and TCP; within one node, shared memory.
    assert sorted(ratios.values())[2] > 1.2, ratios


def _imports(path: Path) -> set[str]:
    """Absolute module names a file imports, at its top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_bench_osu_imports_have_no_cycle() -> None:
    """No module of bench.osu imports, even lazily, one that imports it back (paths <-> numba_path was one)."""
    pkg = ROOT / "bench" / "osu"
    graph = {("bench.osu" if p.stem == "__init__" else f"bench.osu.{p.stem}"):
             {m for m in _imports(p) if m == "bench.osu" or m.startswith("bench.osu.")} for p in pkg.glob("*.py")}
    assert {"bench.osu.paths", "bench.osu.numba_path", "bench.osu.callpath"} <= set(graph)

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(graph.get(start, ()))
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo += graph.get(m, ())
        return seen

    assert [m for m in graph if m in reach(m)] == []
    assert "bench.osu.numba_path" in reach("bench.osu.paths")  # chosen there, lazily
    assert "bench.osu.paths" not in reach("bench.osu.numba_path")


def test_numba_and_numpy_are_the_bench_extra_only() -> None:
    """mnp/ imports neither; they are the optional `bench` dependencies, which setup.sh installs."""
    users = {str(p.relative_to(ROOT)): mods for p in sorted((ROOT / "mnp").rglob("*.py"))
             if (mods := {m for m in _imports(p) if m.split(".")[0] in ("numba", "numpy")})}
    assert users == {}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if re.match(r"(numba|numpy)\b", d)]
    assert sorted(project["optional-dependencies"]["bench"]) == ["numba>=0.59", "numpy>=1.26"]
    assert "'.[test,bench]'" in (ROOT / "setup.sh").read_text()
    assert "numba" in _imports(ROOT / "bench" / "osu" / "numba_path.py")  # the scan sees a lazy import
