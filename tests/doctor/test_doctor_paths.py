"""Transport truth in mnp doctor: each pair's path read from real packet counters, its latency judged against the
band of that path, on real isolated local nodes with real MPICH and Open MPI -- and a delay put on every path
with tc inside the nodes' namespaces, far outside any band."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from test_doctor import checks, probe_of, run_doctor

from mnp.cluster.base import NodeInfo
from mnp.cluster.local import LocalCluster
from mnp.doctor import DoctorRequest, analyse, render
from mnp.doctor import run_doctor as doctor_library
from mnp.records import new_job_id

ROOT = Path(__file__).resolve().parents[2]
OMPI_PY = ROOT / ".venv-ompi" / "bin" / "python"
FAMILIES = [pytest.param(sys.executable, "MPICH", id="mpich"),
            pytest.param(str(OMPI_PY), "Open MPI", id="openmpi5",
                         marks=pytest.mark.skipif(not OMPI_PY.exists(), reason=".venv-ompi not set up: ./setup.sh"))]


def add_delay(ns: str) -> str:
    """Delay every packet leaving eth0 in namespace ``ns``: netem's 2 ms where the kernel has it; this project's
    kernel has no sch_netem, so else a token bucket (tbf) at 256 kbit/s, where each packet of an 8-byte MPI message
    (about 130 bytes on the wire) waits about 4 ms for its tokens once the 1600-byte bucket is spent."""
    base = ["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root"]
    if subprocess.run([*base, "netem", "delay", "2ms"], capture_output=True, check=False).returncode == 0:
        return "netem"
    subprocess.run([*base, "tbf", "rate", "256kbit", "burst", "1600", "latency", "5s"], capture_output=True,
                   check=True)
    return "tbf"


class ShapedCluster(LocalCluster):
    """Isolated local nodes, made by the test (the doctor runs on them as on any provider's), with a delay on
    every node's eth0 when ``shaped``. They list their interfaces, as SSH or Batch nodes do."""

    probe_ifaces = True

    def __init__(self, job_id: str, num_nodes: int, shaped: bool) -> None:
        super().__init__(job_id, num_nodes)
        self.shaped = shaped
        self.qdiscs: list[str] = []

    def create(self, shm_bytes: int | None, progress: Callable[[int, int], None] | None = None,
               init: Callable[[int, int], int] | None = None) -> list[NodeInfo]:
        nodes = super().create(shm_bytes, progress, init)
        if self.shaped:
            self.qdiscs = [add_delay(self.ns(i)) for i in range(self.num_nodes)]
            shown = subprocess.run(["ip", "netns", "exec", self.ns(0), "tc", "qdisc", "show", "dev", "eth0"],
                                   capture_output=True, text=True, check=True).stdout
            assert self.qdiscs[0] in shown, shown
        return nodes


@pytest.mark.namespaces
@pytest.mark.parametrize("python,lib", FAMILIES)
def test_every_path_slow_fails_naming_the_band(mnp_home: Path, no_leftovers: None, python: str, lib: str) -> None:
    """The same nodes, made by the same code, pass without the delay and fail with it: every inter-node pair is
    then over the band of TCP between nodes on one machine, the doctor says so and exits 1. The shared-memory pair
    of node 0 sends no packets, so the delay does not touch it."""
    reports = {}
    for shaped in (False, True):
        cluster = ShapedCluster(new_job_id(), 3, shaped)
        reports[shaped] = doctor_library(DoctorRequest(cluster=cluster, home=mnp_home, python=python))
        assert not shaped or cluster.qdiscs == [cluster.qdiscs[0]] * 3
    healthy, slow = reports[False], reports[True]
    assert healthy.exit_code == 0, [c.detail for c in healthy.checks if not c.ok]
    assert slow.exit_code == 1, [c.detail for c in slow.checks]
    for report in (healthy, slow):
        mpi = report.check("mpi")
        assert mpi is not None and mpi.detail.startswith(lib)
        paths = report.check("paths")
        assert paths is not None and paths.ok, paths.detail  # the delay slows the path, it does not change it
        observed = {tuple(p["nodes"]): p["observed"] for p in paths.data["pairs"]}
        assert observed == {(0, 1): "tcp:eth0", (0, 2): "tcp:eth0", (1, 2): "tcp:eth0", (0, 0): "shm"}
    lat = slow.check("latency")
    assert lat is not None and not lat.ok and not lat.warn
    assert lat.detail.startswith("all 3 pair(s) slower than the tcp-host band (<= 100 us; typical 3-12 us: TCP "
                                 "between nodes on one machine): median "), lat.detail
    inter = [p for p in lat.data["pairs"] if p["nodes"][0] != p["nodes"][1]]
    assert all(p["slow"] and p["us"] > 1000 for p in inter), inter  # ms of queueing: no band's neighbourhood
    ok = healthy.check("latency")
    assert ok is not None and ok.ok and all(not p["slow"] for p in ok.data["pairs"])
    assert render(slow).endswith("result: FAIL: a launch would fail (latency)")


@pytest.mark.namespaces
@pytest.mark.parametrize("python,env,lib", [
    pytest.param(sys.executable, ["MPIR_CVAR_NOLOCAL=1"], "MPICH", id="mpich"),
    pytest.param(str(OMPI_PY), ["OMPI_MCA_btl=tcp,self"], "Open MPI", id="openmpi5",
                 marks=pytest.mark.skipif(not OMPI_PY.exists(), reason=".venv-ompi not set up: ./setup.sh"))])
def test_tcp_where_shared_memory_was_expected(mnp_home: Path, no_leftovers: None, python: str, env: list[str],
                                              lib: str) -> None:
    """One node, two ranks: with the MPI's shared memory on, no packet moves; with it off (the job's own env), the
    messages go over loopback TCP -- at a latency still inside the shared-memory band, so only the counters can
    tell -- and the doctor fails, naming the path and why."""
    base = ["--nodes", "1", "--json", "--python", python]
    p = run_doctor(base, mnp_home)
    assert p.returncode == 0, p.stdout + p.stderr
    good = checks(json.loads(p.stdout))
    assert good["mpi"]["detail"].startswith(lib)
    assert [(x["expected"], x["observed"]) for x in good["paths"]["data"]["pairs"]] == [("shm", "shm")]

    p = run_doctor([*base, *(w for e in env for w in ("--env", e))], mnp_home)
    assert p.returncode == 1, p.stdout + p.stderr
    report = json.loads(p.stdout)
    c = checks(report)
    assert [k for k, v in c.items() if not v["ok"] and not v["warn"]] == ["paths"]
    assert c["paths"]["detail"].startswith("node 0 (2 ranks): TCP over lo where shared memory was expected (")
    assert "the MPI's shared-memory transport is off or failed" in c["paths"]["detail"]
    pair = report["pairs"][0]
    assert pair["nodes"] == [0, 0] and pair["deltas"]["lo"] >= pair["trips"]  # every round trip crossed lo


@pytest.mark.namespaces
def test_tcp_where_efa_was_expected(mnp_home: Path, no_leftovers: None) -> None:
    """A real probe's counters (TCP over eth0) judged as if every node had EFA: transport auto would then be EFA,
    and messages on eth0 are a silent fallback to TCP."""
    p = run_doctor(["--nodes", "2", "--json"], mnp_home)
    assert p.returncode == 0, p.stdout + p.stderr
    probe = probe_of(json.loads(p.stdout), mnp_home)
    efa = copy.deepcopy(probe)
    for node in efa["nodes"]:
        node["efa"] = {"devices": ["rdmap0s6"], "uverbs": ["/dev/infiniband/uverbs0"], "usable": True,
                       "provider_ok": True}
    by = {c.name: c for c in analyse(efa)}
    assert by["transport"].ok and by["transport"].data["inter_node"] == "efa"
    assert not by["paths"].ok and not by["paths"].warn
    assert by["paths"].detail.startswith("node 0-1: TCP over eth0 where EFA was expected (")
    assert "a silent fallback from EFA to TCP" in by["paths"].detail
    by = {c.name: c for c in analyse(probe)}  # the same counters, judged as what they were: TCP, as expected
    assert by["paths"].ok and by["transport"].data["inter_node"] == "tcp"


@pytest.mark.namespaces
def test_oversubscribed_probe_pairs_are_not_judged(mnp_home: Path, no_leftovers: None) -> None:
    """Two local nodes on this machine's CPUs: where node 0 has one CPU, its two probe ranks share it, and their
    latency is named as not judged instead of being compared with the shared-memory band."""
    p = run_doctor(["--nodes", "2", "--json"], mnp_home)
    assert p.returncode == 0, p.stdout + p.stderr
    report = json.loads(p.stdout)
    lat = checks(report)["latency"]
    node0 = next(r for r in report["nodes"] if r["index"] == 0)
    shm = next(x for x in lat["data"]["pairs"] if x["nodes"] == [0, 0])
    assert shm["judged"] == (node0["cpus"] >= 2)
    if node0["cpus"] < 2:
        assert "not judged: node 0 (2 ranks) (its 2 ranks shared 1 CPU on node 0, " in lat["detail"]
