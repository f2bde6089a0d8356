"""Tree spawn over SSH: with more hosts than ``--tree-width``, mnp dials only the first ones itself; each of their
agents dials its children with the system ssh and the same options (real sshd hosts, real ssh clients)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_mnp
from sshnodes import SshNodes

from mnp.control.tree import Tree

pytestmark = pytest.mark.namespaces

# Tree(7, 2): mnp dials hosts 0 and 1; host 0 dials 2 and 3, host 1 dials 4 and 5, host 2 dials 6
TREE = Tree(7, 2)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshNodes]:
    nodes = SshNodes(8, tmp_path_factory.mktemp("sshtree"), up=list(range(7)), quiet=True).start()  # 7: down
    try:
        yield nodes
    finally:
        nodes.stop()


def _hostfile(hosts: SshNodes, tmp: Path, nodes: list[int]) -> Path:
    hf = tmp / "hosts"
    hf.write_text("".join(f"{hosts.addresses[i]}\n" for i in nodes))
    return hf


def test_each_level_is_dialled_by_its_parent(hosts: SshNodes, tmp_path: Path, mnp_home: Path) -> None:
    """Each rank prints the address its node's SSH session came from (SSH_CLIENT): the coordinator's for the top
    hosts, the parent host's for the others. The MPI hello's PMI barrier crosses every level."""
    hf = _hostfile(hosts, tmp_path, list(range(7)))
    script = tmp_path / "where.py"
    script.write_text("import os\nfrom mpi4py import MPI\nc = MPI.COMM_WORLD\n"
                      "print('WHERE', c.Get_rank(), c.Get_size(), os.environ['MNP_NODE_INDEX'], "
                      "os.environ.get('SSH_CLIENT', '').split(' ')[0], flush=True)\n")
    p = run_mnp(["run", *hosts.ssh_args(), "--hostfile", str(hf), "--tree-width", "2", "--transport", "tcp",
                 "--json", sys.executable, str(script)], mnp_home, timeout=180)
    assert p.returncode == 0, p.stderr
    where = {int(node): client for _, rank, size, node, client in
             (line.split() for line in p.stderr.splitlines() + p.stdout.splitlines() if "WHERE " in line
              for line in [line[line.index("WHERE"):]])}
    assert sorted(where) == list(range(7))
    coordinator = {where[0], where[1]}
    assert len(coordinator) == 1 and coordinator.isdisjoint(hosts.addresses)  # mnp's own address, not a host's
    for node in range(2, 7):
        parent = TREE.parent(node)
        assert parent is not None and where[node] == hosts.addresses[parent], (node, where)
    res = json.loads(p.stdout[p.stdout.index("{"):]) if "{" in p.stdout else {}
    assert res.get("state", "SUCCEEDED") == "SUCCEEDED"


def test_a_host_a_relay_cannot_reach_is_named_in_one_line(hosts: SshNodes, tmp_path: Path, mnp_home: Path) -> None:
    """Host 7 (nothing listens on port 22) is node 5 of the job, a child of node 1: its relay's ssh fails, and
    the job fails at once naming it, as when mnp dials a host itself."""
    hf = _hostfile(hosts, tmp_path, [0, 1, 2, 3, 4, 7])
    p = run_mnp(["run", *hosts.ssh_args(), "--hostfile", str(hf), "--tree-width", "2", "hostname"], mnp_home,
                timeout=120)
    assert p.returncode == 1, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert hosts.addresses[7] in last and "ssh failed" in last and "Connection refused" in last, p.stderr
    assert "Traceback" not in p.stderr


def test_same_hosts_below_the_width_are_all_dialled_here(hosts: SshNodes, tmp_path: Path, mnp_home: Path) -> None:
    hf = _hostfile(hosts, tmp_path, [0, 1, 2])
    p = run_mnp(["run", *hosts.ssh_args(), "--hostfile", str(hf), "sh", "-c",
                 "echo FROM ${SSH_CLIENT%% *}"], mnp_home, timeout=120)
    assert p.returncode == 0, p.stderr
    froms = {line.split("FROM ")[1] for line in p.stdout.splitlines() if "FROM " in line}
    assert len(froms) == 1 and froms.isdisjoint(hosts.addresses)


def test_tree_spawn_needs_no_more_than_the_job_gave(hosts: SshNodes, tmp_path: Path) -> None:
    """The relay's ssh command line carries the job's SSH options and nothing secret (keys go down stdin)."""
    from mnp.cluster.hosts import HostSpec
    from mnp.cluster.ssh import SshCluster, SshOptions

    c = SshCluster("job", [HostSpec(a) for a in hosts.addresses[:3]],
                   SshOptions(user="root", key_file=str(hosts.client_key), known_hosts=str(hosts.known_hosts),
                              config_file=str(hosts.ssh_config), connect_timeout=3, tree_width=2))
    spec = c.spawn_spec(2)
    argv = spec["argv"]
    assert argv[0] == "ssh" and "BatchMode=yes" in argv and "ConnectTimeout=3" in argv
    assert argv[argv.index("-F") + 1] == str(hosts.ssh_config) and argv[argv.index("-i") + 1] == str(hosts.client_key)
    assert f"UserKnownHostsFile={hosts.known_hosts}" in argv and argv[argv.index("-l") + 1] == "root"
    assert argv[-2] == hosts.addresses[2] and "mnp.cluster.ssh_task" in argv[-1]
    assert "secret" not in " ".join(argv)


def test_a_relayed_host_that_dies_is_lost_at_once_by_name(hosts: SshNodes, tmp_path: Path, mnp_home: Path) -> None:
    """Host 6's agent (started by host 2's) is killed mid-job: its relay sees the ssh session end and says so;
    the job fails naming node 6 and its host, without waiting for the node to fall silent (15 s)."""
    import os
    import signal
    import subprocess
    import time

    hf = _hostfile(hosts, tmp_path, list(range(7)))
    proc = subprocess.Popen([sys.executable, "-m", "mnp", "run", *hosts.ssh_args(), "--hostfile", str(hf),
                             "--tree-width", "2", "sleep", "100"], env={**os.environ, "MNP_HOME": str(mnp_home)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    agent, deadline = None, time.monotonic() + 60
    while agent is None and time.monotonic() < deadline:
        pids = hosts.pids(6)
        cmds = {}
        for pid in pids:
            try:
                cmds[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
        if any(c.startswith("sleep 100") for c in cmds.values()):
            agent = next((p for p, c in cmds.items() if "ssh_task" in c and "mnp-watchdog" not in c), None)
        time.sleep(0.2)
    assert agent is not None, proc.kill() or proc.communicate()
    os.kill(agent, signal.SIGKILL)
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 255, err
    last = err.strip().splitlines()[-1]
    assert "node 6 lost" in last and hosts.addresses[6] in last and "SSH session ended" in last, err
    assert time.monotonic() - t0 < 10
