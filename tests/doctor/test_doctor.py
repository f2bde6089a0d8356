"""mnp doctor: the probe on real isolated local nodes, the analysis on its real output, and the pure parts."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT
from sshnodes import SshNodes

from mnp.cluster.local import plan_node_cpus
from mnp.doctor import Check, DoctorReport, analyse, read_probe, render, slow_pairs
from mnp.fabric.decide import decide
from mnp.fabric.shm import fmt_bytes, shm_need

# The real `mnp` command (its group loads `doctor` lazily), in its own process, as users run it.
_MAIN = "from mnp.cli.main import main; main()"
MiB = 1 << 20


def run_doctor(args: list[str], home: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MNP_HOME": str(home)}
    env.pop("MNP_DEBUG", None)
    return subprocess.run([sys.executable, "-c", _MAIN, "doctor", *args], check=False, capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def checks(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def probe_of(report: dict, home: Path) -> dict:
    """The probe's own output, read back from the job's kept rank-0 log."""
    probe = read_probe(home / "jobs" / report["job_id"] / "logs" / "node0.rank0.out")
    assert probe is not None
    return probe


@pytest.mark.namespaces
def test_three_local_nodes(mnp_home: Path, no_leftovers: None) -> None:
    p = run_doctor(["--nodes", "3", "--json"], mnp_home)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "MNP-PROBE" not in p.stderr  # the probe's data line is kept in the log, not shown
    report = json.loads(p.stdout)
    assert report["ok"] is True
    nodes = report["nodes"]
    assert [n["index"] for n in nodes] == [0, 1, 2]
    assert len({n["hostname"] for n in nodes}) == 3 and len({n["address"] for n in nodes}) == 3
    assert len({n["mpi"] for n in nodes}) == 1 and nodes[0]["mpi"].startswith("MPICH")
    node_cpus = [len(c) for _, c in sorted(plan_node_cpus(os.sched_getaffinity(0), 3).items())]
    assert [n["cpus"] for n in nodes] == node_cpus  # each local node's own CPU set, as the probe saw it
    for n in nodes:  # one kernel clock under every local node: the NTP-like estimate must find ~0
        assert abs(n["offset_s"]) < 0.01
        assert n["efa"]["usable"] is False and n["shm_total"] > 0
    m = report["latency_us"]
    assert len(m) == 3 and all(len(row) == 3 for row in m)
    assert m[0][0] > 0 and m[1][1] is None and m[2][2] is None  # node 0's two ranks: the shared-memory pair
    for i in range(3):
        for j in range(3):
            if i != j:
                assert m[i][j] > 0 and m[i][j] == m[j][i]
                assert report["first_ms"][i][j] > 0
    c = checks(report)
    assert set(c) == {"reachability", "clock", "mpi", "versions", "cpus", "shm", "interfaces", "transport", "paths",
                      "latency", "connect"}
    assert all(x["ok"] or x["warn"] for x in c.values())
    paths = {tuple(p["nodes"]): p for p in c["paths"]["data"]["pairs"]}
    assert paths[0, 0]["expected"] == "shm" and paths[0, 0]["observed"] == "shm"
    assert all(paths[k]["expected"] == "tcp-host" and paths[k]["observed"] == "tcp:eth0" for k in [(0, 1), (0, 2),
                                                                                                 (1, 2)])
    assert c["transport"]["data"]["inter_node"] == "tcp" and c["transport"]["data"]["env"]["FI_PROVIDER"] == "tcp"
    assert c["interfaces"]["data"]["name"] == "eth0"
    assert c["reachability"]["data"]["measured_over"]["inter_node"] == "tcp"
    assert c["mpi"]["ok"] and c["versions"]["ok"] and c["clock"]["ok"] and c["shm"]["ok"]
    rows = c["shm"]["data"]["nodes"]  # default ranks per node: the node's CPUs; the node's /dev/shm fits them
    assert [r["ranks"] for r in rows] == node_cpus
    assert all(r["free"] >= r["need"] for r in rows)


@pytest.mark.namespaces
def test_efa_asked_on_nodes_without_it(mnp_home: Path, no_leftovers: None) -> None:
    p = run_doctor(["--nodes", "2", "--transport", "efa"], mnp_home)
    assert p.returncode == 1, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    fail = [ln for ln in lines if ln.startswith("FAIL")]
    assert len(fail) == 1 and fail[0].split()[1] == "transport", p.stdout
    assert "'efa' asked for, but node 0 (node0) has no usable EFA device" in fail[0]
    assert "no EFA device in /sys/class/infiniband" in fail[0]
    assert any(ln.startswith("OK") and ln.split()[1] == "reachability" for ln in lines)
    assert "latency, half round trip (us):" in lines
    table = lines[lines.index("latency, half round trip (us):") + 1:]
    assert table[0].split() == ["0", "1"]
    row0 = table[1].split()  # node 0: its shared-memory pair on the diagonal, then node 0-1
    assert row0[:2] == ["0", "node0"] and float(row0[2]) > 0 and float(row0[3]) > 0
    assert table[2].split()[:4] == ["1", "node1", row0[3], "-"]
    assert lines[-1] == "result: FAIL: a launch would fail (transport)"


@pytest.mark.namespaces
def test_shm_shortfall_on_this_machine(mnp_home: Path, no_leftovers: None) -> None:
    """Plain local processes use this machine's /dev/shm: ask for more ranks than it can hold."""
    st = os.statvfs("/dev/shm")
    total = st.f_blocks * st.f_frsize
    ranks = total // MiB + 100  # MPICH takes over 1 MiB of /dev/shm a rank: more than this /dev/shm has
    assert shm_need(ranks, "mpich", None) > total
    p = run_doctor(["--nodes", "2", "--no-isolate", "--ranks-per-node", str(ranks), "--json"], mnp_home)
    assert p.returncode == 1, p.stdout + p.stderr
    report = json.loads(p.stdout)
    c = checks(report)
    assert not c["shm"]["ok"] and not c["shm"]["warn"]
    assert c["shm"]["detail"].startswith("node 0 (") and "/dev/shm is" in c["shm"]["detail"]
    assert "set shm_size:" in c["shm"]["detail"]
    assert [r["ranks"] for r in c["shm"]["data"]["nodes"]] == [ranks, ranks]
    assert all(r["need"] > r["total"] for r in c["shm"]["data"]["nodes"])
    assert [k for k, v in c.items() if not v["ok"] and not v["warn"]] == ["shm"]


@pytest.mark.namespaces
def test_ssh_hosts_with_a_small_shm_and_one_unreachable(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    """Hosts that run sshd, with a Docker-sized 64 MiB /dev/shm; host 2 has nothing listening."""
    hosts = SshNodes(3, tmp_path, up=[0, 1], shm_bytes=64 * MiB).start()
    try:
        hf = tmp_path / "hostfile"
        # 64 slots a host: MPICH's own segments (about 1.06 MiB a rank) need more than the 64 MiB the hosts have
        hf.write_text(f"{hosts.addresses[0]}:64\n{hosts.addresses[1]}:64\n")
        p = run_doctor(["--hostfile", str(hf), "--json", *hosts.ssh_args()], mnp_home)
        assert p.returncode == 1, p.stdout + p.stderr
        report = json.loads(p.stdout)
        c = checks(report)
        assert [k for k, v in c.items() if not v["ok"] and not v["warn"]] == ["shm"]
        assert c["shm"]["detail"].startswith("node 0 (node0): /dev/shm is 64 MiB, the job needs 68.1 MiB (MPICH's "
                                             "own 68.1 MiB for 64 ranks"), c["shm"]["detail"]
        assert "shm_size:" in c["shm"]["detail"]
        assert [r["ranks"] for r in c["shm"]["data"]["nodes"]] == [64, 64]
        assert [n["address"] for n in report["nodes"]] == hosts.addresses[:2]
        assert c["interfaces"]["data"]["name"] == "eth0"  # probed on the hosts, not known in advance
        assert c["transport"]["data"]["inter_node"] == "tcp"
        assert report["latency_us"][0][1] > 0

        p = run_doctor(["--hosts", ",".join(hosts.addresses), "--json", *hosts.ssh_args()], mnp_home)
        assert p.returncode == 1, p.stdout + p.stderr
        report = json.loads(p.stdout)
        assert [(c["name"], c["ok"]) for c in report["checks"]] == [("reachability", False)]
        assert report["checks"][0]["detail"].startswith(f"{hosts.addresses[2]}: ")
    finally:
        hosts.stop()


def test_unreachable_host(mnp_home: Path) -> None:
    p = run_doctor(["--hosts", "127.0.0.1", "--ssh-port", "1", "--json"], mnp_home)
    assert p.returncode == 1, p.stdout + p.stderr
    report = json.loads(p.stdout)
    assert report["ok"] is False and report["nodes"] == [] and report["latency_us"] is None
    assert [(c["name"], c["ok"], c["detail"]) for c in report["checks"]] == \
        [("reachability", False, "127.0.0.1: connection refused on port 1 (is sshd running?)")]


@pytest.mark.namespaces
def test_analysis_of_a_real_probe(mnp_home: Path, no_leftovers: None) -> None:
    """Isolated nodes get a /dev/shm the job's size, so shortfalls, skew and mixed MPIs are put into a real probe."""
    ranks = 3
    p = run_doctor(["--nodes", "2", "--ranks-per-node", str(ranks), "--json"], mnp_home)
    assert p.returncode == 0, p.stdout + p.stderr
    report = json.loads(p.stdout)
    probe = probe_of(report, mnp_home)
    assert probe["size"] == 3 and len(probe["latency_us"]) == 2  # 2 nodes; node 0 runs 2 ranks
    shm_total = probe["nodes"][0]["shm_total"]
    assert shm_total == shm_need(ranks, "mpich", None)  # the probe's /dev/shm was made the size the job's would be

    by = {c.name: c for c in analyse(probe, ranks_per_node=ranks)}
    assert all(c.ok for c in by.values() if c.name != "cpus"), [c.detail for c in by.values() if not c.ok]
    cpus = probe["nodes"][0]["cpus"]
    assert by["cpus"].ok == (cpus >= ranks) and by["cpus"].warn  # more ranks than CPUs: a warning, not a failure
    if cpus < ranks:
        assert by["cpus"].detail.startswith(f"node 0 (node0): {ranks} ranks on {cpus} CPU(s): oversubscribed")

    by = {c.name: c for c in analyse(probe, ranks_per_node=ranks, job_shm=2 * shm_total)}
    assert not by["shm"].ok and by["shm"].detail.startswith(
        f"node 0 (node0): /dev/shm is {fmt_bytes(shm_total)}, the job needs {fmt_bytes(2 * shm_total)}")
    by = {c.name: c for c in analyse(probe, ranks_per_node=100_000)}
    assert not by["shm"].ok and "(and 1 more node(s))" in by["shm"].detail

    skewed = copy.deepcopy(probe)
    skewed["clock"][1]["offset_s"] = -2.5
    skewed["nodes"][1]["mpi"] = "Open MPI v5.0.5, package: Open MPI"
    by = {c.name: c for c in analyse(skewed)}
    assert not by["clock"].ok and by["clock"].detail.startswith("node 1 (node1) is -2.500 s off node 0")
    assert not by["mpi"].ok and "'Open MPI v5.0.5, package: Open MPI' on node(s) 1" in by["mpi"].detail

    by = {c.name: c for c in analyse(probe, transport="shm")}
    assert not by["transport"].ok and "'shm' works within one node only" in by["transport"].detail


def test_slow_pairs() -> None:
    m: list[list[float | None]] = [[None, 5.0, 5.2, 5.1],
                                   [5.0, None, 16.0, 5.3],
                                   [5.2, 16.0, None, 15.0],
                                   [5.1, 5.3, 15.0, None]]
    # median of the six pairs is 5.25: 16.0 is over 3x, 15.0 is not (15.75 is the line)
    assert slow_pairs(m) == [(1, 2, 16.0)]
    assert slow_pairs(m, factor=2.0) == [(1, 2, 16.0), (2, 3, 15.0)]
    assert slow_pairs([[None]]) == [] and slow_pairs([]) == []
    assert slow_pairs([[None, 0.0], [0.0, None]]) == []

    probe = {"nodes": [{"hostname": f"n{i}"} for i in range(4)], "latency_us": m,
             "remeasured": [[1, 2, 40.0]]}
    report = DoctorReport([Check("reachability", True, "4 node(s)"), Check("transport", True, "tcp"),
                           Check("latency", False, "1 of 6 pair(s) slower", warn=True)], probe, "abc", [], 1.0)
    assert report.ok  # slow pairs only warn
    text = render(report).splitlines()
    assert text[1:4] == ["OK    reachability  4 node(s)", "OK    transport     tcp",
                         "WARN  latency       1 of 6 pair(s) slower"]
    assert text[-1] == "result: OK: a launch should work"
    assert text[5].split() == ["0", "1", "2", "3"]
    assert text[7].split() == ["1", "n1", "5.0", "-", "16.0", "5.3"]
    report.checks.append(Check("shm", False, "node 0: too small"))
    assert not report.ok and render(report).endswith("result: FAIL: a launch would fail (shm)")


def test_usage_errors_exit_2(mnp_home: Path) -> None:
    from mnp.cli.main import cli

    runner = CliRunner()
    env = {"MNP_HOME": str(mnp_home)}
    r = runner.invoke(cli, ["doctor", "--hostfile", "h.txt", "--hosts", "a,b"], env=env)
    assert r.exit_code == 2 and "--hostfile and --hosts: give one or the other" in r.output
    r = runner.invoke(cli, ["doctor", "--nodes", "0"], env=env)
    assert r.exit_code == 2
    r = runner.invoke(cli, ["doctor", "--transport", "ib"], env=env)
    assert r.exit_code == 2
    r = runner.invoke(cli, ["doctor", "--ranks-per-node", "0"], env=env)
    assert r.exit_code == 2
    assert not (mnp_home / "jobs").exists()  # nothing was launched


def _facts(i: int, net: str = "10.0.0", shm: int = 8 << 30) -> dict:
    """A node as the probe reports it: mnp.fabric.decide.node_facts plus what the doctor compares."""
    return {"hostname": f"n{i}", "mpi": "MPICH Version: 4.2.3", "python": "3.11.7 (main)", "mnp": "0.1.0",
            "cpus": 4, "kernel": "6.1.0", "shm_total": shm, "shm_free": shm,
            "efa": {"usable": False, "problem": "no EFA device in /sys/class/infiniband"},
            "ifaces": [{"name": "lo", "address": "127.0.0.1", "prefixlen": 8, "excluded": "loopback"},
                       {"name": "eth0", "address": f"{net}.{i + 1}", "prefixlen": 24}]}


def _probe(nodes: list[dict]) -> dict:
    n = len(nodes)
    return {"size": n, "nodes": nodes, "clock": [{"offset_s": 0.0, "rtt_s": 1e-5}] * n,
            "latency_us": [[None if i == j else 5.0 for j in range(n)] for i in range(n)],
            "first_ms": [[None if i == j else 1.0 for j in range(n)] for i in range(n)], "remeasured": []}


def test_fabric_checks_are_what_a_launch_decides() -> None:
    """interfaces, transport and shm come from mnp.fabric.decide.decide, the function a launch calls."""
    nodes = [_facts(0), _facts(1), _facts(2, shm=2 * MiB)]  # MPICH needs over 1 MiB a rank: 2 ranks don't fit
    by = {c.name: c for c in analyse(_probe(nodes), ranks_per_node=2, main_address="10.0.0.1")}
    plan = decide("mpich", "auto", None, nodes, ["n0", "n1", "n2"], [2, 2, 2], main_address="10.0.0.1")
    assert by["interfaces"].ok and by["interfaces"].detail == plan.iface_why
    assert by["interfaces"].data["name"] == plan.iface == "eth0"
    assert by["transport"].ok and by["transport"].detail == f"tcp between nodes, shm within: {plan.transport.why}"
    assert by["transport"].data["env"] == plan.transport.env and plan.transport.env["FI_TCP_IFACE"] == "eth0"
    assert not by["shm"].ok and by["shm"].detail == plan.shm_problems[0]
    assert by["shm"].detail.startswith("node 2 (n2): /dev/shm is 2 MiB, the job needs 2.2 MiB")
    assert [r["need"] for r in by["shm"].data["nodes"]] == [plan.shm[i]["need"] for i in range(3)]
    assert [k for k, c in by.items() if not c.ok] == ["shm"]


def test_a_refused_fabric_part_fails_alone() -> None:
    """Where decide() refuses one part, that check fails and the others are still judged."""
    apart = [_facts(0), _facts(1, net="10.9.9")]  # no subnet in common
    by = {c.name: c for c in analyse(_probe(apart), ranks_per_node=1, transport="efa")}
    assert not by["interfaces"].ok and "node 1: shares no IPv4 subnet with node 0" in by["interfaces"].detail
    assert not by["transport"].ok and by["transport"].data == {"asked": "efa"}
    assert "'efa' asked for, but node 0 (n0) has no usable EFA device: no EFA device in" in by["transport"].detail
    assert by["shm"].ok and [r["ranks"] for r in by["shm"].data["nodes"]] == [1, 1]

    by = {c.name: c for c in analyse(_probe(apart))}  # auto: tcp, with no interface to pin
    assert not by["interfaces"].ok
    assert by["transport"].ok and by["transport"].data["inter_node"] == "tcp"
    assert "FI_TCP_IFACE" not in by["transport"].data["env"]

    blind = [_facts(0), {k: v for k, v in _facts(1).items() if k != "ifaces"}]
    blind[1]["ifaces_error"] = "n1: cannot list interfaces with 'ip -d -j addr': not found"
    by = {c.name: c for c in analyse(_probe(blind))}
    assert not by["interfaces"].ok
    assert by["interfaces"].detail == "node 1 (n1): n1: cannot list interfaces with 'ip -d -j addr': not found"
    assert by["transport"].ok

    by = {c.name: c for c in analyse(_probe([_facts(0)]), transport="shm")}  # one node: nothing to pick
    assert by["interfaces"].ok and by["interfaces"].detail == "one node" and by["transport"].ok


def test_library_never_sees_click() -> None:
    """mnp.doctor imports no Click and does not load the probe program that `python -m` runs as __main__."""
    code = ("import sys, mnp.doctor, mnp.doctor.run, mnp.doctor.analyse, mnp.doctor.report; "
            "print(sorted(m for m in sys.modules if m == 'click' or m.startswith(('click.', 'mnp.cli', "
            "'mnp.doctor.probe')) and m != 'mnp.doctor.probe_data'))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                       check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["mnp.doctor.probe", "mnp.probe"])
def test_probe_runs_alone(module: str) -> None:
    """Both names of the probe run it (an MPI singleton here), without runpy's already-imported warning."""
    p = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", module], capture_output=True,
                       text=True, timeout=120, cwd=ROOT, check=False)
    assert p.returncode == 0, p.stderr
    probe = read_probe_text(p.stdout)
    assert probe["size"] == 1 and probe["latency_us"] == [[None]]
    facts = probe["nodes"][0]
    assert {"hostname", "cpus", "mpi", "shm_total", "shm_free", "kernel", "efa"} <= set(facts)
    assert "ifaces" in facts or "ifaces_error" in facts


def read_probe_text(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("MNP-PROBE ")]
    assert len(lines) == 1, stdout
    return json.loads(lines[0][len("MNP-PROBE "):])
