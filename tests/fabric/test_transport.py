from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mnp.errors import SpecError
from mnp.fabric.efa import EfaReport
from mnp.fabric.transport import TransportChoice, binding_env, choose_transport, fork_safety_needed

EFA_OK = EfaReport(("rdmap16s27",), ("/dev/infiniband/uverbs0",), (), True, True, True, None)
EFA_NO_RDMA = EfaReport(("rdmap16s27",), ("/dev/infiniband/uverbs0",), (), True, None, True, None)
EFA_NO_UVERBS = EfaReport(("rdmap16s27",), (), ("/dev/infiniband/uverbs0",), None, None, False,
                          "EFA device rdmap16s27 present but /dev/infiniband/uverbs0 missing: pass --device "
                          "/dev/infiniband/uverbs0 to the container")


# -- the decision ----------------------------------------------------------------------------------------------
def test_positional_call_the_coordinator_makes() -> None:
    c = choose_transport("auto", "auto", 2, iface="eth0")
    assert isinstance(c, TransportChoice)
    assert (c.inter_node, c.intra_node, c.provider, c.iface) == ("tcp", "shm", "tcp", "eth0")
    assert c.env == {"MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "tcp", "FI_TCP_IFACE": "eth0"}
    assert c.why == "auto: no node has EFA; MPICH ch4:ofi over libfabric tcp, on eth0"


@pytest.mark.parametrize("transport", ["auto", "shm"])
def test_one_node_mpich_still_gets_a_netmod(transport: str) -> None:
    c = choose_transport("mpich", transport, 1, iface="eth0")
    assert c.inter_node == "none" and c.provider == "tcp" and c.iface is None
    assert c.env == {"MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "tcp"}  # no FI_TCP_IFACE: nothing leaves the node
    assert "one node" in c.why


def test_auto_efa_everywhere_and_partly() -> None:
    assert choose_transport("mpich", "auto", 3, efa_nodes=[True, True, True]).inter_node == "efa"
    c = choose_transport("mpich", "auto", 3, efa_nodes=[True, False, True], node_names=["a", "b", "c"])
    assert c.inter_node == "tcp" and c.why.startswith("auto: node 1 (b) has no EFA")
    assert choose_transport("mpich", "auto", 2, efa_nodes=[True]).inter_node == "tcp"  # missing entries: no EFA
    assert choose_transport("mpich", "auto", 1, efa_nodes=[True]).inter_node == "none"


def test_efa_asked_for_but_missing_names_the_node() -> None:
    with pytest.raises(SpecError, match=r"^transport: 'efa' asked for, but node 1 has no usable EFA device$"):
        choose_transport("mpich", "efa", 2, efa_nodes=[True, False])
    with pytest.raises(SpecError) as e:
        choose_transport("mpich", "efa", 2, efa_nodes=[EFA_OK, EFA_NO_UVERBS], node_names=["ip-1", "ip-2"])
    assert e.value.field == "transport"
    assert str(e.value) == ("transport: 'efa' asked for, but node 1 (ip-2) has no usable EFA device: EFA device "
                            "rdmap16s27 present but /dev/infiniband/uverbs0 missing: pass --device "
                            "/dev/infiniband/uverbs0 to the container")
    with pytest.raises(SpecError, match="node 0 has no usable EFA"):
        choose_transport("mpich", "efa", 1)


def test_bad_inputs() -> None:
    with pytest.raises(SpecError, match="^transport: 'shm' works within one node only; this job has 2 nodes"):
        choose_transport("mpich", "shm", 2)
    with pytest.raises(SpecError, match="^mpi: 'lam' is not one of"):
        choose_transport("lam", "auto", 1)
    with pytest.raises(SpecError, match="^transport: 'ib' is not one of"):
        choose_transport("mpich", "ib", 1)
    with pytest.raises(SpecError, match="^nodes: must be at least 1"):
        choose_transport("mpich", "auto", 0)


# -- MPICH -----------------------------------------------------------------------------------------------------
def test_mpich_efa_with_rdma_everywhere() -> None:
    c = choose_transport("mpich", "efa", 2, iface="eth0", efa_nodes=[EFA_OK, EFA_OK], kernel_release="5.10.0-28")
    assert c.provider == "efa" and c.iface is None
    assert c.env == {"MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "efa", "FI_EFA_USE_DEVICE_RDMA": "1",
                     "FI_EFA_FORK_SAFE": "1", "RDMAV_FORK_SAFE": "1"}
    assert "device RDMA on" in c.why


def test_efa_rdma_only_when_every_node_is_known_to_have_it() -> None:
    c = choose_transport("mpich", "efa", 2, efa_nodes=[EFA_OK, EFA_NO_RDMA])
    assert "FI_EFA_USE_DEVICE_RDMA" not in c.env and "left to libfabric" in c.why
    c = choose_transport("mpich", "efa", 2, efa_nodes=[True, True])
    assert "FI_EFA_USE_DEVICE_RDMA" not in c.env
    c = choose_transport("mpich", "efa", 2, efa_nodes=[True, True], efa_rdma=[True, True])
    assert c.env["FI_EFA_USE_DEVICE_RDMA"] == "1"
    c = choose_transport("mpich", "efa", 2, efa_nodes=[EFA_OK, EFA_OK], efa_rdma=[True, False])
    assert "FI_EFA_USE_DEVICE_RDMA" not in c.env


def test_fork_safety() -> None:
    assert fork_safety_needed(None) and fork_safety_needed("4.14.355-1.el7") and fork_safety_needed("5.12.1")
    assert not fork_safety_needed("5.13.0") and not fork_safety_needed("6.8.0-1021-aws")
    new = choose_transport("mpich", "efa", 2, efa_nodes=[True, True], kernel_release="6.8.0-1021-aws")
    assert "FI_EFA_FORK_SAFE" not in new.env and "RDMAV_FORK_SAFE" not in new.env
    forced = choose_transport("mpich", "efa", 2, efa_nodes=[True, True], kernel_release="6.8.0", fork_safe=True)
    assert forced.env["FI_EFA_FORK_SAFE"] == forced.env["RDMAV_FORK_SAFE"] == "1"
    off = choose_transport("mpich", "efa", 2, efa_nodes=[True, True], fork_safe=False)
    assert "FI_EFA_FORK_SAFE" not in off.env


@pytest.mark.parametrize("mpi", ["mpich", "auto", "openmpi", "impi", "intelmpi"])
@pytest.mark.parametrize("transport", ["auto", "tcp", "shm"])
def test_no_efa_knobs_without_efa(mpi: str, transport: str) -> None:
    n = 1 if transport == "shm" else 2
    env = choose_transport(mpi, transport, n, iface="eth0", efa_nodes=[True] * n if transport == "tcp" else None,
                           efa_rdma=[True] * n).env
    assert not [k for k in env if k.startswith("FI_EFA_") or k == "RDMAV_FORK_SAFE"]


def test_mpich_tcp_without_iface() -> None:
    c = choose_transport("mpich", "tcp", 2)
    assert c.env == {"MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "tcp"} and "no interface pinned" in c.why


# -- Open MPI --------------------------------------------------------------------------------------------------
def test_openmpi_tcp_5x() -> None:
    c = choose_transport("openmpi", "tcp", 2, iface="eth0", openmpi_major=5)
    assert c.env == {"OMPI_MCA_pml": "ob1", "OMPI_MCA_btl": "tcp,self,sm", "OMPI_MCA_osc": "^ucx",
                     "OMPI_MCA_btl_tcp_if_include": "eth0", "OMPI_MCA_oob_tcp_if_include": "eth0"}
    assert c.provider is None and c.iface == "eth0"


def test_openmpi_tcp_4x_uses_vader_and_cidr() -> None:
    c = choose_transport("openmpi", "auto", 2, subnet="10.0.0.0/24", openmpi_major=4)
    assert c.env["OMPI_MCA_btl"] == "tcp,self,vader"
    assert c.env["OMPI_MCA_btl_tcp_if_include"] == c.env["OMPI_MCA_oob_tcp_if_include"] == "10.0.0.0/24"
    assert choose_transport("openmpi", "auto", 2, iface="eth1", subnet="10.0.0.0/24").iface == "eth1"


def test_openmpi_unknown_major_uses_the_name_both_accept() -> None:
    assert choose_transport("openmpi", "tcp", 2).env["OMPI_MCA_btl"] == "tcp,self,vader"
    assert choose_transport("openmpi", "shm", 1).env["OMPI_MCA_btl"] == "self,vader"


def test_openmpi_tcp_one_rank_a_node_goes_through_libfabric() -> None:
    c = choose_transport("openmpi", "tcp", 2, iface="eth0", openmpi_major=5, one_rank_per_node=True)
    assert c.env["OMPI_MCA_pml"] == "^ucx" and c.env["OMPI_MCA_mtl"] == "ofi"
    assert c.env["OMPI_MCA_mtl_ofi_provider_include"] == "tcp" and c.env["FI_TCP_IFACE"] == "eth0"
    # ob1's settings stay, for a build whose ofi MTL does not find libfabric's tcp provider
    assert c.env["OMPI_MCA_btl"] == "tcp,self,sm" and c.env["OMPI_MCA_btl_tcp_if_include"] == "eth0"
    assert c.env["OMPI_MCA_oob_tcp_if_include"] == "eth0" and c.provider == "tcp"
    assert "Open MPI cm/ofi over libfabric tcp (one rank a node" in c.why
    # a subnet only (interface names differ): no FI_TCP_IFACE to give libfabric, so ob1 with the CIDR
    c = choose_transport("openmpi", "tcp", 2, subnet="10.0.0.0/24", one_rank_per_node=True)
    assert c.env["OMPI_MCA_pml"] == "ob1" and "OMPI_MCA_mtl" not in c.env and c.provider is None
    # more than one rank a node: ob1, so that node-local messages use shared memory
    assert choose_transport("openmpi", "tcp", 2, iface="eth0").env["OMPI_MCA_pml"] == "ob1"


def test_openmpi_one_node() -> None:
    assert choose_transport("openmpi", "shm", 1, iface="eth0", openmpi_major=5).env == {
        "OMPI_MCA_pml": "ob1", "OMPI_MCA_btl": "self,sm", "OMPI_MCA_osc": "^ucx"}
    assert choose_transport("openmpi", "auto", 1, openmpi_major=4).env["OMPI_MCA_btl"] == "self,vader"


def test_openmpi_efa() -> None:
    c = choose_transport("openmpi", "efa", 2, iface="eth0", efa_nodes=[EFA_OK, EFA_OK], kernel_release="6.1")
    assert c.env == {"OMPI_MCA_pml": "cm", "OMPI_MCA_mtl": "ofi", "OMPI_MCA_mtl_ofi_provider_include": "efa",
                     "OMPI_MCA_btl": "^openib,uct", "OMPI_MCA_osc": "^ucx", "OMPI_MCA_oob_tcp_if_include": "eth0",
                     "FI_EFA_USE_DEVICE_RDMA": "1"}
    assert c.provider == "efa"


# -- Intel MPI -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["impi", "intelmpi"])
def test_intel_mpi_has_its_own_variables(name: str) -> None:
    assert choose_transport(name, "auto", 1).env == {"I_MPI_FABRICS": "shm"}
    assert choose_transport(name, "tcp", 2, iface="ens5").env == {
        "I_MPI_FABRICS": "shm:ofi", "I_MPI_OFI_PROVIDER": "tcp", "FI_PROVIDER": "tcp", "FI_TCP_IFACE": "ens5"}
    c = choose_transport(name, "auto", 2, efa_nodes=[True, True], fork_safe=False)
    assert c.env == {"I_MPI_FABRICS": "shm:ofi", "I_MPI_OFI_PROVIDER": "efa", "FI_PROVIDER": "efa"}
    assert c.provider == "efa" and "Intel MPI shm:ofi over libfabric efa" in c.why
    assert not [k for k in c.env if k.startswith("MPIR_CVAR_")]  # never MPICH's names


# -- binding when nodes share cores ----------------------------------------------------------------------------
@pytest.mark.parametrize("mpi,expected", [
    ("openmpi", {"PRTE_MCA_hwloc_default_binding_policy": "none", "OMPI_MCA_hwloc_base_binding_policy": "none"}),
    ("mpich", {"HYDRA_BINDING": "none"}), ("auto", {"HYDRA_BINDING": "none"}), ("impi", {"I_MPI_PIN": "0"}),
    ("intelmpi", {"I_MPI_PIN": "0"})])
def test_binding_off_when_cpus_are_shared(mpi: str, expected: dict[str, str]) -> None:
    env, why = binding_env(mpi, True)
    assert env == expected and why.startswith("off: the nodes are on one machine")
    c = choose_transport(mpi, "tcp", 2, iface="eth0", cpus_shared=True)
    assert expected.items() <= c.env.items() and "binding off (nodes on one machine)" in c.why
    plain = choose_transport(mpi, "tcp", 2, iface="eth0")
    assert not set(expected) & set(plain.env) and "binding" not in plain.why
    assert binding_env(mpi, False) == ({}, "left to the MPI (the nodes do not share cores)")


AFFINITY = ("import os; from mpi4py import MPI; w = MPI.COMM_WORLD.gather(len(os.sched_getaffinity(0)))\n"
            "if w: print('AFF', *sorted(w), flush=True)")  # one line: launchers interleave the ranks' output
ROOT_DIR = Path(__file__).resolve().parents[2]
ROOT_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "PRTE_ALLOW_RUN_AS_ROOT": "1",
            "PRTE_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
# The launchers bind (or are told to, for Hydra, which leaves ranks unbound by default) and the library pins.
BINDERS = {
    "openmpi5": ("openmpi", [str(ROOT_DIR / ".venv-ompi/bin/mpirun")], ROOT_DIR / ".venv-ompi/bin/python", {}),
    "openmpi4": ("openmpi", ["/usr/bin/mpirun", "-x", "MPI4PY_LIBMPI"], ROOT_DIR / ".venv-ompi/bin/python",
                 {"MPI4PY_LIBMPI": "/usr/lib/x86_64-linux-gnu/libmpi.so.40"}),
    "hydra": ("mpich", [str(Path(sys.executable).parent / "mpiexec")], Path(sys.executable),
              {"HYDRA_BINDING": "core"}),
    "impi": ("impi", [str(ROOT_DIR / ".venv-impi/bin/mpiexec")], ROOT_DIR / ".venv-impi/bin/python", {}),
}


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to tell bound from unbound")
@pytest.mark.parametrize("name", list(BINDERS))
def test_binding_env_really_unbinds(name: str) -> None:
    family, launcher, python, env = BINDERS[name]
    if not Path(launcher[0]).exists() or not python.exists() or not Path(env.get("MPI4PY_LIBMPI", "/")).exists():
        pytest.skip(f"{name} not installed")
    cpus = len(os.sched_getaffinity(0))

    def widths(extra: dict[str, str]) -> list[int]:
        r = subprocess.run([*launcher, "-n", "2", str(python), "-c", AFFINITY], capture_output=True, text=True,
                           timeout=120, env={**os.environ, **ROOT_ENV, **env, **extra}, check=False)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        found = [ln.split()[1:] for ln in r.stdout.splitlines() if ln.startswith("AFF ")]
        assert len(found) == 1, r.stdout[-2000:]
        return [int(x) for x in found[0]]

    assert widths({}) == [1, 1]  # bound: one CPU each
    assert widths(binding_env(family, True)[0]) == [cpus, cpus]


# -- the real thing: the single-node env runs MPICH ------------------------------------------------------------
MPIEXEC = Path(sys.executable).parent / "mpiexec"


@pytest.mark.skipif(not MPIEXEC.exists(), reason="needs the venv's MPICH (hydra mpiexec)")
@pytest.mark.parametrize("transport", ["auto", "shm"])
def test_single_node_env_runs_mpich(transport: str) -> None:
    env = {**os.environ, **choose_transport("mpich", transport, 1).env}
    prog = "from mpi4py import MPI; c = MPI.COMM_WORLD; print('sum', c.allreduce(c.rank + 1))"
    r = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, "-c", prog], capture_output=True, text=True,
                       timeout=120, env=env, check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stdout.split().count("3") == 2
