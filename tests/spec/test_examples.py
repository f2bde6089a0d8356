"""Every job file the project ships validates (examples, benchmarks, the Batch job definition), and the
node-range example runs as documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, run_mnp

from mnp.plan import resolve_nodes
from mnp.spec.model import load_spec

SHIPPED = sorted([*ROOT.glob("examples/*.yaml"), *ROOT.glob("bench/*.yaml"), ROOT / "containers/jobdef-example.json"])


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(ROOT)) for p in SHIPPED])
def test_shipped_job_files_validate(path: Path) -> None:
    spec = load_spec(path)
    work = resolve_nodes(spec, str(path))
    assert len(work) == spec.nodes and all(w.command for w in work)


@pytest.mark.namespaces
def test_node_ranges_example_runs(mnp_home: Path, no_leftovers: None) -> None:
    p = run_mnp(["launch", "--json", "examples/ranges.yaml"], mnp_home)
    assert p.returncode == 0, p.stderr
    assert "7 ranks on 4 hosts" in p.stderr  # node 0: 1 rank (inner range), nodes 1-3: 2 each
    st = json.loads(run_mnp(["status", "--json", json.loads(p.stdout)["job_id"]], mnp_home).stdout)
    assert [len(n["ranks"]) for n in st["nodes"]] == [1, 2, 2, 2]
