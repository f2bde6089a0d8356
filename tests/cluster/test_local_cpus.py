"""Local nodes get their own CPUs (issue #9): the plan, the cluster's attributes, and what ranks see in real nodes."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
from conftest import run_mnp, write_job

from mnp.cluster.local import LocalCluster, ProcessCluster, plan_node_cpus
from mnp.records import new_job_id

HOST = sorted(os.sched_getaffinity(0))
LINE = re.compile(r"^\[node (\d+) rank (\d+)\] CPUS (\[[\d, ]*\]) NPROC (\d+)$")
# What a rank reports: the CPUs it may run on (the kernel's view) and nproc's (what OpenMP and hwloc users see).
REPORT = "import os, subprocess; print('CPUS', sorted(os.sched_getaffinity(0)), 'NPROC', " \
         "subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip())"


def _ht(cpu: int) -> tuple[int, int]:
    """A 4-core, 8-thread package numbered as Linux does: CPU i and i+4 are one core's two threads."""
    return (0, cpu % 4)


@pytest.mark.parametrize(("cpus", "nodes", "core_of", "want"), [
    ([0, 1], 1, None, {0: [0, 1]}),
    ([0, 1], 2, None, {0: [0], 1: [1]}),
    ([0, 1], 3, None, {0: [0, 1], 1: [0, 1], 2: [0, 1]}),             # more nodes than CPUs: all on all
    ([0, 1], 5, None, {i: [0, 1] for i in range(5)}),
    ([0, 1, 2], 2, None, {0: [0, 1], 1: [2]}),                        # uneven: the first node one more
    ([2, 3, 5], 2, None, {0: [2, 3], 1: [5]}),                        # only the CPUs we may use (taskset, cgroup)
    (range(8), 2, _ht, {0: [0, 4, 1, 5], 1: [2, 6, 3, 7]}),           # whole cores: siblings stay together
    (range(8), 4, _ht, {0: [0, 4], 1: [1, 5], 2: [2, 6], 3: [3, 7]}),
    (range(8), 6, _ht, {0: [0, 4], 1: [1, 5], 2: [2], 3: [6], 4: [3], 5: [7]}),  # threads, still distinct
    (range(8), 9, _ht, {i: [0, 4, 1, 5, 2, 6, 3, 7] for i in range(9)}),
    ([0, 1], 0, None, {}),
])
def test_plan(cpus: list[int], nodes: int, core_of: object, want: dict[int, list[int]]) -> None:
    plan = plan_node_cpus(cpus, nodes, core_of if callable(core_of) else lambda c: None)
    assert plan == want


def test_plan_with_this_machines_topology() -> None:
    plan = plan_node_cpus(HOST, len(HOST))
    assert sorted(c for cpus in plan.values() for c in cpus) == HOST  # every CPU, each to one node
    assert all(len(cpus) == 1 for cpus in plan.values())


def test_cluster_attributes() -> None:
    fits = LocalCluster(new_job_id(), len(HOST))
    assert fits.cpus_shared is False
    assert sorted(c for cpus in fits.node_cpus.values() for c in cpus) == HOST
    crowded = LocalCluster(new_job_id(), len(HOST) + 1)
    assert crowded.cpus_shared is True
    assert all(cpus == HOST for cpus in crowded.node_cpus.values())
    plain = ProcessCluster(new_job_id(), 2)  # one machine's CPUs under every "node"
    assert plain.cpus_shared is True and plain.node_cpus == {0: HOST, 1: HOST}
    assert ProcessCluster(new_job_id(), 1).cpus_shared is False


def _launch(tmp_path: Path, home: Path, nodes: int) -> dict[int, list[tuple[int, list[int], int]]]:
    """`mnp launch --nodes N` of a job without ranks_per_node; per node, what each of its ranks saw."""
    job = write_job(tmp_path / f"cpus{nodes}.yaml", name="cpus", command=[sys.executable, "-c", REPORT], timeout=60)
    p = run_mnp(["launch", "--nodes", str(nodes), str(job)], home, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    seen: dict[int, list[tuple[int, list[int], int]]] = {}
    for line in p.stdout.splitlines():
        m = LINE.match(line)
        assert m, f"unexpected output line: {line!r}"
        seen.setdefault(int(m[1]), []).append((int(m[2]), json.loads(m[3]), int(m[4])))
    assert sorted(seen) == list(range(nodes)), p.stdout
    return seen


@pytest.mark.namespaces
def test_two_nodes_own_cpus_and_default_ranks(tmp_path: Path, mnp_home: Path) -> None:
    if len(HOST) < 2:
        pytest.skip("needs 2 CPUs")
    seen = _launch(tmp_path, mnp_home, 2)
    node_cpus = {}
    for node, ranks in seen.items():
        sets = {tuple(cpus) for _, cpus, _ in ranks}
        assert len(sets) == 1, f"node {node}: ranks saw different CPUs: {ranks}"
        cpus = list(sets.pop())
        assert all(nproc == len(cpus) for _, _, nproc in ranks), f"node {node}: nproc disagrees: {ranks}"
        assert set(cpus) <= set(HOST) and len(cpus) < len(HOST), f"node {node} sees every host CPU: {cpus}"
        # ranks_per_node unset: one rank per CPU of the node, as the node sees them
        assert len(ranks) == len(cpus), f"node {node}: {len(ranks)} ranks on {len(cpus)} CPUs"
        node_cpus[node] = cpus
    assert not set(node_cpus[0]) & set(node_cpus[1]), f"nodes share CPUs: {node_cpus}"
    assert node_cpus == plan_node_cpus(HOST, 2)
    if len(HOST) == 2:  # the machines this is built on: a core each, one rank each
        assert node_cpus == {0: [HOST[0]], 1: [HOST[1]]}
        assert {node: len(r) for node, r in seen.items()} == {0: 1, 1: 1}


@pytest.mark.namespaces
def test_more_nodes_than_cpus_share_them_all(tmp_path: Path, mnp_home: Path) -> None:
    nodes = len(HOST) + 1
    if nodes > 9:
        pytest.skip("a many-core host: the plan table covers this")
    seen = _launch(tmp_path, mnp_home, nodes)
    for node, ranks in seen.items():
        assert [(cpus, nproc) for _, cpus, nproc in ranks] == [(HOST, len(HOST))] * len(HOST), f"node {node}"
