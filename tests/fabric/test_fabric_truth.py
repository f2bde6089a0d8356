"""Transport truth in mnp.fabric: path bands and packet counters (mnp.fabric.bands), oversubscription warnings and
the MPI start-up hint (mnp.fabric.decide) -- pure parts on their own, then on real nodes and a real failed start."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
from conftest import JOBS, run_mnp, write_job

from mnp.cluster.local import plan_node_cpus
from mnp.fabric.bands import BANDS, bands, expected_path, judge_path, observed_path, read_counters
from mnp.fabric.decide import cpu_list, decide, node_facts, oversubscription, parse_cpu_list, startup_hint

MiB = 1 << 20
NO_EFA = {"usable": False, "problem": "no EFA device in /sys/class/infiniband"}


def _facts(cpus: int, boot: str | None = "b1", cpu_set: str | None = None, shm: int = 1 << 30) -> dict:
    return {"shm_total": shm, "shm_free": shm, "kernel": "6.1.0", "efa": NO_EFA, "cpus": cpus,
            "cpu_list": cpu_set if cpu_set is not None else f"0-{cpus - 1}", "boot_id": boot}


@pytest.mark.noroot
def test_cpu_lists() -> None:
    assert cpu_list([5, 0, 1, 2]) == "0-2,5" and cpu_list([]) == "" and cpu_list({3}) == "3"
    assert parse_cpu_list("0-2,5") == {0, 1, 2, 5} and parse_cpu_list("x,4") == {4} and parse_cpu_list("") == set()


@pytest.mark.noroot
def test_oversubscription_per_node_and_per_machine() -> None:
    names = ["n0", "n1", "n2"]
    # node 1 has 2 CPUs for 3 ranks; the others are fine, on different machines
    got = oversubscription([2, 3, 1], [_facts(4, "a"), _facts(2, "b"), _facts(1, "c")], names)
    assert list(got) == [1] and got[1].startswith("node 1 (n1): 3 ranks on 2 CPU(s): oversubscribed")
    # three nodes of one machine that all see its 2 CPUs: 3 ranks in all, one too many
    shared = [_facts(2, "m", "0-1") for _ in range(3)]
    got = oversubscription([1, 1, 1], shared, names)
    assert list(got) == [0] and got[0].startswith("nodes 0, 1, 2 are one machine: 3 ranks on its 2 CPU(s)")
    # the same machine, each node on CPUs of its own: no line
    own = [_facts(1, "m", "0"), _facts(1, "m", "1")]
    assert oversubscription([1, 1], own, names[:2]) == {}
    # unknown machine or CPUs: nothing is claimed
    assert oversubscription([8, 8], [_facts(0, None, ""), _facts(0, None, "")], names[:2]) == {}
    # node_cpus given by the caller wins over the facts
    assert list(oversubscription([2, 2], [_facts(4, "a"), _facts(4, "b")], names[:2], node_cpus=[1, 4])) == [0]


@pytest.mark.noroot
def test_plan_carries_the_warnings_for_launch_to_show() -> None:
    small = 3 * MiB  # MPICH: 64 KiB + 1.06 MiB a rank: 2 ranks fit in 3 MiB on a thin margin
    facts = [_facts(1, "a", shm=small), _facts(1, "b")]
    plan = decide("mpich", "tcp", None, facts, ["n0", "n1"], [2, 1])
    assert plan.oversubscribed == {0: plan.warnings[-1]}
    assert plan.warnings[-1].startswith("node 0 (n0): 2 ranks on 1 CPU(s): oversubscribed")
    assert plan.warnings[:-1] == plan.shm_warnings and len(plan.shm_warnings) == 1
    assert f"cpus: {plan.warnings[-1]}" in plan.explain().splitlines()
    assert plan.to_info()["oversubscribed"] == {"0": plan.warnings[-1]}
    assert decide("mpich", "tcp", None, [_facts(2, "a"), _facts(2, "b")], ["n0", "n1"], [2, 2]).warnings == []
    # what each path should cost, for --explain: nodes on two machines (boot ids a, b) talk TCP between machines
    assert plan.bands == {"within a node": BANDS["shm"].describe(), "between nodes": BANDS["tcp"].describe()}
    assert any(ln.startswith("expected 8 B latency, half round trip: within a node: shm band (<= 20 us")
               for ln in plan.explain().splitlines())
    one = decide("mpich", "tcp", None, [_facts(1, "m", "0"), _facts(1, "m", "1")], ["n0", "n1"], [1, 1])
    assert one.bands == {"between nodes": BANDS["tcp-host"].describe()}  # one machine; one rank a node: no shm


def test_node_facts_name_cpus_and_machine() -> None:
    f = node_facts(False)
    mine = os.sched_getaffinity(0)
    assert f["cpus"] == len(mine) and parse_cpu_list(f["cpu_list"]) == mine
    assert f["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()


@pytest.mark.noroot
def test_bands_and_their_override() -> None:
    assert [b.ceiling for b in bands({}).values()] == [20.0, 100.0, 500.0, 100.0]
    assert all(b.typical[1] < b.ceiling for b in BANDS.values())
    got = bands({"MNP_LATENCY_BANDS": "shm=5, tcp=300"})
    assert got["shm"].ceiling == 5 and got["tcp"].ceiling == 300 and got["efa"].ceiling == 100
    assert "ceiling from MNP_LATENCY_BANDS" in got["shm"].describe()
    for bad in ("ib=5", "shm=", "shm=-1", "shm=inf", "tcp"):
        with pytest.raises(ValueError, match="MNP_LATENCY_BANDS"):
            bands({"MNP_LATENCY_BANDS": bad})


@pytest.mark.noroot
def test_expected_and_observed_paths() -> None:
    assert expected_path(True, True, "efa") == "shm"
    assert expected_path(False, True, "tcp") == "tcp-host" and expected_path(False, False, "tcp") == "tcp"
    assert expected_path(False, False, "efa") == "efa"
    assert observed_path({"eth0": 80, "lo": 3}, 40) == ("tcp:eth0", "80 packets on eth0 for 40 round trips")
    assert observed_path({"eth0": 5}, 400)[0] == "none"  # a heartbeat is not a pingpong
    assert observed_path({"rdma:rdmap0s6/1": 800, "eth0": 2}, 400)[0] == "rdma"
    assert observed_path({}, 30) == ("none", "0 packets on any interface for 30 round trips")

    v = judge_path("shm", "tcp:lo", "800 packets on lo for 400 round trips")
    assert not v.ok and v.why.startswith("TCP over lo where shared memory was expected (800 packets")
    assert judge_path("shm", "none", "0 packets").ok
    v = judge_path("efa", "tcp:eth0", "e")
    assert not v.ok and "a silent fallback from EFA to TCP" in v.why
    assert judge_path("efa", "rdma", "e").ok and judge_path("efa", "none", "e").ok
    v = judge_path("tcp", "tcp:docker0", "e", iface="eth0")
    assert not v.ok and v.why.startswith("TCP over docker0, not over eth0, the interface pinned")
    assert judge_path("tcp", "tcp:eth0", "e", iface="eth0").ok
    assert judge_path("tcp-host", "tcp:lo", "e", iface="eth0").ok  # plain processes of one machine
    assert judge_path("tcp", "unknown", "").ok


def test_counters_see_packets_on_loopback() -> None:
    """read_counters reads this network namespace's real counters: 200 UDP datagrams to ourselves on lo."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        before = read_counters()
        for _ in range(200):
            tx.sendto(b"x" * 8, rx.getsockname())
            rx.recv(16)
        after = read_counters()
    finally:
        rx.close()
        tx.close()
    assert after["lo"] - before["lo"] >= 200
    assert observed_path({"lo": after["lo"] - before["lo"]}, 100)[0] == "tcp:lo"


@pytest.mark.namespaces
def test_oversubscribed_launch_says_so(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    """A job with one more rank per node than a local node's CPUs: --explain shows the one line (and the launch
    shows it as a warning once the coordinator prints FabricPlan.warnings)."""
    cpus = len(plan_node_cpus(os.sched_getaffinity(0), 2)[0])
    job = write_job(tmp_path / "over.yaml", nodes=2, ranks_per_node=cpus + 1, transport="tcp", command="true")
    p = run_mnp(["launch", "--explain", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr
    line = f"node 0 (node0): {cpus + 1} ranks on {cpus} CPU(s): oversubscribed"
    assert any(ln.startswith("mnp: cpus: " + line) for ln in p.stderr.splitlines()), p.stderr


@pytest.mark.namespaces
@pytest.mark.parametrize("env,given", [({"FI_PROVIDER": "efa"}, "FI_PROVIDER=efa (the job's env)"),
                                       ({"FI_TCP_IFACE": "bogus0"}, "FI_TCP_IFACE=bogus0 (the job's env)")])
def test_startup_hint_for_ranks_that_died_in_mpi_init(tmp_path: Path, mnp_home: Path, no_leftovers: None,
                                                      env: dict[str, str], given: str) -> None:
    """Real MPICH ranks die in MPI_Init (the job's env overrides what mnp chose); from the failed rank's stderr
    and the job's record the hint names the interface, the provider and what the ranks really got."""
    job = write_job(tmp_path / "bad.yaml", nodes=2, ranks_per_node=1, transport="tcp", env=env, timeout=60,
                    command=[sys.executable, str(JOBS / "pingpong.py")])
    p = run_mnp(["launch", "--json", "--grace", "1", str(job)], mnp_home)
    assert p.returncode != 0, p.stderr
    result = json.loads(p.stdout)
    info = json.loads(run_mnp(["status", "--json", result["job_id"]], mnp_home).stdout)["info"]
    errs = "".join(f.read_text() for f in sorted((mnp_home / "jobs" / result["job_id"] / "logs").glob("*.err")))
    assert "MPI_Init" in errs or "Init_thread" in errs, errs
    hint = startup_hint(info, errs, env)
    assert hint is not None
    assert hint.startswith("MPI start-up failed with interface eth0 (the local cluster's node interface"), hint
    assert ", transport tcp, libfabric provider tcp; " in hint and given in hint
    assert "MPIR_CVAR_CH4_NETMOD=ofi" in hint
    assert startup_hint(info, "Traceback (most recent call last):\nZeroDivisionError: division by zero\n") is None


OMPI_PY = Path(__file__).resolve().parents[2] / ".venv-ompi" / "bin" / "python"


@pytest.mark.namespaces
@pytest.mark.skipif(not OMPI_PY.exists(), reason=".venv-ompi not set up: ./setup.sh")
@pytest.mark.parametrize("rpn,extra,pml", [(1, {}, "cm"), (2, {}, "ob1"),
                                           (1, {"OMPI_MCA_mtl_ofi_provider_include": "nosuchprovider"}, "ob1")])
def test_open_mpi_pml_that_really_ran(tmp_path: Path, mnp_home: Path, no_leftovers: None, rpn: int,
                                      extra: dict[str, str], pml: str) -> None:
    """Open MPI 5 between two nodes: one rank a node runs cm over libfabric tcp, two a node ob1 (shared memory
    within the node), and where the ofi MTL finds no such provider ob1 takes over and the job still runs."""
    job = write_job(tmp_path / "ompi.yaml", nodes=2, ranks_per_node=rpn, transport="tcp", timeout=120,
                    env={"OMPI_MCA_pml_base_verbose": "10", **extra},
                    command=[str(OMPI_PY), "-c", "from mpi4py import MPI; print('SUM', MPI.COMM_WORLD.allreduce(1))"])
    p = run_mnp(["launch", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr[-3000:]
    chosen = {ln.split("select: component ", 1)[1].split()[0] for ln in (p.stdout + p.stderr).splitlines()
              if "select: component" in ln and ln.rstrip().endswith(" selected")}  # Open MPI's verbose lines
    assert chosen == {pml}, p.stderr[-3000:]
    assert p.stdout.count(f"SUM {2 * rpn}") == 2 * rpn
