"""Fabric decisions on local nodes: explicit transports checked, decisions recorded and explained, a crashed
job's segments removed from /dev/shm."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import run_mnp, write_job

pytestmark = pytest.mark.namespaces


def test_transport_efa_without_efa_is_refused(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "e.yaml", nodes=2, ranks_per_node=1, transport="efa", command="true")
    p = run_mnp(["launch", str(job)], mnp_home)
    assert p.returncode == 2, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("mnp: error: ") and "transport: 'efa' asked for, but node 0" in last


def test_explain_prints_decisions(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "x.yaml", nodes=2, ranks_per_node=2, command="true")
    p = run_mnp(["launch", "--explain", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr
    assert "mnp: transport: tcp between nodes, shm within a node" in p.stderr
    assert "mnp: interface: eth0" in p.stderr
    assert "mnp: /dev/shm node 1:" in p.stderr and ": ok" in p.stderr
    assert "MPIR_CVAR_CH4_NETMOD=ofi" in p.stderr


def test_crashed_ranks_segments_are_removed(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    # Plain local processes share this machine's /dev/shm: a rank killed by SIGKILL leaves MPICH's segment
    # there, and mnp removes that job's segment (and only that) when the job ends.
    code = ("from mpi4py import MPI; import os, signal, time\n"
            "c = MPI.COMM_WORLD; c.Barrier()\n"
            "print('SEGS', sorted(f for f in os.listdir('/dev/shm') if f.startswith('mpich_shm_')), flush=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL) if c.rank == 1 else time.sleep(60)\n")
    job = write_job(tmp_path / "c.yaml", nodes=1, ranks_per_node=2, command=[sys.executable, "-c", code])
    bystander = Path("/dev/shm/mpich_shm_00000000_0")  # someone else's: must survive
    bystander.write_bytes(b"x")
    before = set(os.listdir("/dev/shm"))
    try:
        p = run_mnp(["launch", "--no-isolate", "--grace", "1", "--json", str(job)], mnp_home)
        assert p.returncode == 137, p.stderr
        segs = [json.loads(line.split("SEGS ")[1].replace("'", '"')) for line in p.stderr.splitlines()
                if "SEGS " in line]
        ours = {s for seg in segs for s in seg} - before
        assert ours, "MPICH made no segment?"
        assert not (ours & set(os.listdir("/dev/shm"))), "the job's segment was left in /dev/shm"
        assert bystander.exists()
        info = json.loads(run_mnp(["status", "--json", json.loads(p.stdout)["job_id"]], mnp_home).stdout)["info"]
        assert set(info["shm_removed"]["0"]) == ours
    finally:
        bystander.unlink()
