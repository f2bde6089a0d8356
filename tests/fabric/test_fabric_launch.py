"""Fabric decisions on SSH hosts: /dev/shm checked (and grown on request) before any rank starts, interfaces
probed on the hosts. (Local-node cases: test_fabric_local.py.)"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import JOBS, run_mnp, write_job
from sshnodes import SshNodes

pytestmark = pytest.mark.namespaces


@pytest.fixture(scope="module")
def small_shm_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshNodes]:
    nodes = SshNodes(2, tmp_path_factory.mktemp("sshf"), shm_bytes=64 << 20).start()  # Docker's default size
    try:
        yield nodes
    finally:
        nodes.stop()


def test_short_dev_shm_stops_before_launch(small_shm_hosts: SshNodes, tmp_path: Path, mnp_home: Path) -> None:
    job = write_job(tmp_path / "j.yaml", ranks_per_node=1, shm_size="512Mi", transport="tcp",
                    command=[sys.executable, str(JOBS / "envdump.py")])
    hosts = ",".join(small_shm_hosts.addresses)
    p = run_mnp(["launch", *small_shm_hosts.ssh_args(), "--hosts", hosts, str(job)], mnp_home)
    assert p.returncode == 1, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert "node 0 (node0): /dev/shm is 64 MiB, the job needs 512 MiB" in last
    assert "shm_size: 512Mi" in last and "--shm-size=512m" in last and "sharedMemorySize: 512" in last
    assert "ENV {" not in p.stdout  # no rank started


def test_remount_shm_grows_it_and_runs(small_shm_hosts: SshNodes, tmp_path: Path, mnp_home: Path) -> None:
    job = write_job(tmp_path / "j.yaml", ranks_per_node=1, shm_size="256Mi", transport="tcp",
                    command=[sys.executable, "-c", "import os; s=os.statvfs('/dev/shm'); "
                             "print('SHM', s.f_blocks * s.f_frsize)"])
    hosts = ",".join(small_shm_hosts.addresses)
    p = run_mnp(["launch", *small_shm_hosts.ssh_args(), "--hosts", hosts, "--remount-shm", "--json", str(job)],
                mnp_home)
    assert p.returncode == 0, p.stderr
    sizes = [int(line.split("SHM ")[1]) for line in p.stderr.splitlines() if "SHM " in line]
    assert sizes == [256 << 20, 256 << 20]
    info = json.loads(run_mnp(["status", "--json", json.loads(p.stdout)["job_id"]], mnp_home).stdout)["info"]
    assert all(s.get("remounted") for s in info["shm"].values())
    assert info["iface"]["name"] == "eth0"  # probed on the hosts (ip -j addr), not assumed
    assert "eth0" in info["iface"]["why"] or info["iface"]["why"]
