"""Whole jobs over the control tree (``--tree-width``): real local nodes, real agents relaying for their subtree,
real MPI through the merged PMI barrier; a relay that dies; 128 nodes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, run_mnp, write_job

from mnp.control.tree import Tree


def _record(home: Path) -> dict:  # type: ignore[type-arg]
    listed = run_mnp(["list", "--json"], home)
    job = json.loads(listed.stdout)[0]["job_id"]
    return json.loads(run_mnp(["status", "--json", job], home).stdout)  # type: ignore[no-any-return]


def test_mpi_hello_over_a_three_level_tree(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    """Tree(7, 2): 0 and 1 dial the coordinator, 2-5 dial them, 6 dials 2. MPI_Init's PMI barrier (business cards
    of all seven ranks) goes up merged and comes down once per edge."""
    assert Tree(7, 2).levels() == [[0, 1], [2, 3, 4, 5], [6]]
    p = run_mnp(["run", "-N", "7", "--tree-width", "2", "--transport", "tcp", sys.executable,
                 str(ROOT / "examples" / "hello.py")], mnp_home, timeout=240)
    assert p.returncode == 0, p.stderr
    assert "7 ranks on 7 hosts: node0, node1, node2, node3, node4, node5, node6" in p.stdout
    assert sorted(line.split("]")[0] for line in p.stdout.splitlines() if "hello from rank" in line) == \
        sorted(f"[node {i} rank {i}" for i in range(7))
    record = _record(mnp_home)
    info = record["info"]
    assert sorted(map(int, info["agent_maxrss_kb"])) == list(range(7))  # every goodbye came up the tree
    assert "refused" not in info
    assert "refused" not in p.stderr
    assert info["control"]["width"] == 2 and info["control"]["depth"] == 3 and info["control"]["barriers"] >= 1
    shown = run_mnp(["status", record["job_id"]], mnp_home).stdout
    assert "control   tree of width 2, 3 levels; the coordinator read" in shown


@pytest.mark.noroot
def test_tree_of_plain_processes_starts_level_by_level(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    """Without namespaces every node is 127.0.0.1: each relay binds a free port and says which in its hello; its
    children start then."""
    job = write_job(tmp_path / "env.yaml", nodes=5, ranks_per_node=1,
                    command=["sh", "-c", "echo node=$MNP_NODE_INDEX"])
    p = run_mnp(["launch", "--no-isolate", "--tree-width", "2", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr
    assert sorted(line.split("] ")[1] for line in p.stdout.splitlines()) == [f"node={i}" for i in range(5)]
    assert sorted(map(int, _record(mnp_home)["info"]["agent_maxrss_kb"])) == list(range(5))


@pytest.mark.noroot
def test_a_relay_whose_ranks_end_first_still_carries_its_subtrees_last_words(tmp_path: Path, mnp_home: Path,
                                                                              no_leftovers: None) -> None:
    """Width 1: node 0 relays for node 1, node 1 for node 2. Node 0's rank fails after 2 s; the others end only
    a second after their SIGTERM. Node 0's agent stays until they did: their output and goodbyes come through."""
    script = tmp_path / "cmd.sh"
    script.write_text('if [ "$MNP_NODE_INDEX" = 0 ]; then sleep 2; exit 3; fi\n'
                      "trap 'sleep 1; echo done-$MNP_NODE_INDEX; exit 0' TERM\nsleep 30 & wait\n")
    p = run_mnp(["run", "-N", "3", "--tree-width", "1", "--no-isolate", "sh", str(script)], mnp_home)
    assert p.returncode == 3, p.stderr
    assert "[node 1 rank 1] done-1" in p.stdout and "[node 2 rank 2] done-2" in p.stdout
    assert sorted(map(int, _record(mnp_home)["info"]["agent_maxrss_kb"])) == [0, 1, 2]


def test_a_relay_that_dies_fails_the_job_and_its_subtree_goes_too(tmp_path: Path, mnp_home: Path,
                                                                  no_leftovers: None) -> None:
    """Node 2 relays for node 6. Killed, the job fails at once naming node 2; node 6, cut off, is stopped with
    the rest (teardown), and nothing is left behind."""
    job = write_job(tmp_path / "sleep.yaml", nodes=7, ranks_per_node=1, command="sleep 100")
    proc = subprocess.Popen([sys.executable, "-m", "mnp", "launch", "--tree-width", "2", str(job)],
                            env={**os.environ, "MNP_HOME": str(mnp_home)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    sleepers: dict[str, psutil.Process] = {}
    deadline = time.monotonic() + 90
    while len(sleepers) < 7 and time.monotonic() < deadline:
        for q in psutil.process_iter(["cmdline", "environ"]):
            try:
                env = q.info["environ"] or {}
                if q.info["cmdline"][:2] == ["sleep", "100"] and env.get("MNP_HOME") == str(mnp_home):
                    sleepers[env["MNP_NODE_INDEX"]] = q
            except (TypeError, KeyError, psutil.Error):
                continue
        time.sleep(0.2)
    assert len(sleepers) == 7, proc.kill() or proc.communicate()
    relay = sleepers["2"].parent()  # node 2's agent, its PID namespace's init
    os.kill(relay.pid, signal.SIGKILL)
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 255, err
    assert "node 2 lost" in err.strip().splitlines()[-1]
    assert time.monotonic() - t0 < 10
    assert not sleepers["6"].is_running() or sleepers["6"].status() == psutil.STATUS_ZOMBIE


def test_128_nodes(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    """128 isolated nodes, width 32: 32 relays, each with 3 children (local nodes are a star unless asked)."""
    p = run_mnp(["run", "-N", "128", "--tree-width", "32", "sh", "-c", "echo $MNP_NODE_INDEX $(hostname)"], mnp_home,
                timeout=300)
    assert p.returncode == 0, p.stderr
    got = sorted(line.split("] ")[1] for line in p.stdout.splitlines())
    assert got == sorted(f"{i} node{i}" for i in range(128))
    info = _record(mnp_home)["info"]
    assert len(info["agent_maxrss_kb"]) == 128 and "refused" not in info
    assert info["control"]["width"] == 32 and info["control"]["depth"] == 2


def test_mpirun_daemons_reach_nodes_below_a_relay(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    """Open MPI's mpirun on node 0 starts its daemons on every other node through the control plane (remote
    commands): with width 2, nodes 2-4 are reached through relays 0 and 1."""
    p = run_mnp(["launch", "-N", "5", "--tree-width", "2", str(ROOT / "examples" / "hello-openmpi.yaml")], mnp_home,
                timeout=240)
    assert p.returncode == 0, p.stderr
    assert "10 ranks on 5 hosts: node0, node1, node2, node3, node4" in p.stdout
    assert _record(mnp_home)["info"]["control"]["depth"] == 2
