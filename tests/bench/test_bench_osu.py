"""bench.osu end to end: short OSU runs through the real `mnp launch` on isolated local nodes.

Tiny sizes and iteration counts keep each launch to a few seconds. What is asserted is what a user reads: OMB
7.4's lines from rank 0 only (header byte for byte as the stored OMB sample, rows read with OMB's rules and
printed with OMB's widths), then mnp's '#' metadata naming the call path and the path the messages took; the
--json record matching the rows; the numba path (the timing loop compiled, MPI called through ctypes) giving the
same sizes; data that did not arrive is an error.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT, launch_module

from bench.osu.omb import OmbTable, parse_omb

LATENCY_SIZES = [1, 2, 4, 8, 16, 32, 64]
OMB = Path(__file__).parent / "omb"


def _launch(tmp_path: Path, home: Path, name: str, nodes: int, rpn: int, args: list[str],
            transport: str = "tcp") -> subprocess.CompletedProcess[str]:
    return launch_module(tmp_path, home, "bench.osu", name, nodes, rpn, args, transport)


def _omb(p: subprocess.CompletedProcess[str]) -> OmbTable:
    """Rank 0's lines (no other rank may print), read with OMB's rules; rows printed with OMB's widths."""
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines and all(ln.startswith("[node 0 rank 0] ") for ln in lines), p.stdout
    table = parse_omb([ln[len("[node 0 rank 0] "):] for ln in lines])
    for size, vals in table.rows:
        assert f"{size:<10d}{vals[0]:18.2f}" in p.stdout
    return table


def _header(file: str) -> list[str]:
    return parse_omb((OMB / file).read_text().splitlines()).header


@pytest.mark.namespaces
@pytest.mark.parametrize("path", ["mpi4py", "numba"])
def test_latency_two_nodes_is_omb_text_then_metadata(tmp_path: Path, mnp_home: Path, no_leftovers: None,
                                                     path: str) -> None:
    p = _launch(tmp_path, mnp_home, f"osu-lat-{path}", 2, 1, ["latency", "-m", "0:64", "-i", "200", "-x", "20",
                                                               "--path", path])
    t = _omb(p)
    assert t.header == _header("osu_latency.txt")  # the blank line, title, datatype and column header
    assert [s for s, _ in t.rows] == LATENCY_SIZES and all(v[0] > 0 for _, v in t.rows)
    meta = "\n".join(t.trailer)
    assert all(ln.startswith("# mnp: ") for ln in t.trailer)
    assert f"call path {path}; MPICH Version:" in meta and "transport tcp (2 node(s), 2 ranks)" in meta


@pytest.mark.namespaces
@pytest.mark.parametrize("path", ["mpi4py", "numba"])
def test_latency_json_record(tmp_path: Path, mnp_home: Path, no_leftovers: None, path: str) -> None:
    p = _launch(tmp_path, mnp_home, f"osu-json-{path}", 1, 2, ["latency", "-m", "64", "-i", "200", "-x", "20",
                                                                "--path", path, "--json"], transport="shm")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("[node 0 rank 0] {")
    rec = json.loads(lines[0].split(" ", 4)[4])
    assert rec["benchmark"] == "latency" and rec["path"] == path and rec["unit"] == "us"
    assert rec["datatype"] == "MPI_CHAR" and rec["osu_version"] == "7.4"
    assert rec["sizes"] == LATENCY_SIZES and rec["iterations"] == [200] * 7 and rec["warmup"] == [20] * 7
    assert all(v > 0 for v in rec["values"])
    env = rec["env"]
    # one node: shared memory, whatever FI_PROVIDER mnp set for a network this job never uses
    assert env["transport"] == "shm" and env["nodes"] == 1 and env["ranks"] == 2 and env["hosts"] == ["node0"]
    assert env["mpi_library"].startswith("MPICH") and re.fullmatch(r"[0-9a-f]+", env["mnp_job_id"])
    assert env["cpus"] >= 1 and env["kernel"]
    if path == "numba":
        assert "/libmpi" in env["libmpi"] and env["numba"] and env["jit_s"] > 0


@pytest.mark.namespaces
@pytest.mark.parametrize("bench,path", [("bw", "mpi4py"), ("bw", "numba"), ("bibw", "mpi4py"), ("bibw", "numba")])
def test_bandwidth_within_one_node(tmp_path: Path, mnp_home: Path, no_leftovers: None, bench: str,
                                   path: str) -> None:
    p = _launch(tmp_path, mnp_home, f"osu-{bench}", 1, 2, [bench, "-m", "4096", "-i", "5", "-x", "1", "-W", "8",
                                                            "--path", path], transport="shm")
    t = _omb(p)
    assert t.header == _header(f"osu_{bench}.txt")
    assert [s for s, _ in t.rows] == [1 << k for k in range(13)]  # 1 B .. 4 KiB
    assert "transport shm (1 node(s), 2 ranks)" in "\n".join(t.trailer)


@pytest.mark.namespaces
@pytest.mark.parametrize("path", ["mpi4py", "numba"])
def test_allreduce_2x2(tmp_path: Path, mnp_home: Path, no_leftovers: None, path: str) -> None:
    p = _launch(tmp_path, mnp_home, "osu-allreduce", 2, 2, ["allreduce", "-m", "1024", "-i", "50", "-x", "5", "-f",
                                                             "--path", path])
    t = _omb(p)
    assert t.header == _header("osu_allreduce-f.txt")
    assert [s for s, _ in t.rows] == [1 << k for k in range(11)]  # MPI_CHAR: 1 B .. 1 KiB
    for _, (avg, lo, hi, iters) in t.rows:
        assert 0 < lo <= avg <= hi and iters == 50
    assert "transport tcp (2 node(s), 4 ranks)" in "\n".join(t.trailer)


@pytest.mark.namespaces
def test_latency_needs_two_ranks(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    p = _launch(tmp_path, mnp_home, "osu-three", 1, 3, ["latency", "-m", "8"], transport="shm")
    assert p.returncode == 2, p.stderr
    assert "osu: error: latency needs exactly 2 ranks, this job has 3" in p.stderr
    assert "# OSU" not in p.stdout


def _imports(path: Path) -> set[str]:
    """Absolute module names a file imports, at its top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.noroot
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


@pytest.mark.noroot
def test_numba_numpy_matplotlib_are_the_bench_extra_only() -> None:
    """mnp/ imports none of them; they are the optional `bench` dependencies, which setup.sh installs; what
    `mnp bench` itself loads before a job starts needs none of them either."""
    heavy = ("numba", "numpy", "matplotlib")
    users = {str(p.relative_to(ROOT)): mods for p in sorted((ROOT / "mnp").rglob("*.py"))
             if (mods := {m for m in _imports(p) if m.split(".")[0] in heavy})}
    assert users == {}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if re.match(r"(numba|numpy|matplotlib)\b", d)]
    assert sorted(project["optional-dependencies"]["bench"]) == ["matplotlib>=3.8", "numba>=0.59", "numpy>=1.26"]
    assert "'.[test,bench]'" in (ROOT / "setup.sh").read_text()
    assert "numba" in _imports(ROOT / "bench" / "osu" / "numba_path.py")  # the scan sees a lazy import
    for name in ("jobs", "spread", "fabric", "osu/runs", "osu/suite", "osu/report", "osu/omb", "md/runs"):
        top = {m.split(".")[0] for m in _imports(ROOT / "bench" / f"{name}.py")}
        assert not top & set(heavy), name
