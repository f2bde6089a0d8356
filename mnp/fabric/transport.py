"""Transport selection: which fabric MPI uses between and within nodes, as one consistent environment.

The decision (``inter_node``): the job's ``transport`` field, checked against what the nodes have --
``efa`` must be on every node (else a spec error naming the node), ``shm`` is one node only, ``auto`` is
shared memory alone on one node, EFA when every node has it, TCP otherwise.

The environment then says the same thing in each MPI family's words (facts: shared/notes/field-notes.md):

- ``mpich`` (and ``auto``): ``MPIR_CVAR_CH4_NETMOD=ofi`` always, or MPICH picks UCX and its own transports;
  ``FI_PROVIDER=tcp`` (+ ``FI_TCP_IFACE``) or ``efa``. Within a node MPICH uses its own POSIX shared memory
  whatever the netmod, but the netmod is still initialised, so one node gets ``FI_PROVIDER=tcp``: measured
  with MPICH 5.0.2 (2 ranks, one machine) ``tcp``, ``shm``, ``udp`` and ``tcp;ofi_rxm`` all run, also in a
  network namespace whose loopback is down, while ``sockets`` fails at finalize there and ``efa`` fails
  without a device (-61); ``shm`` would add a 12.8 MiB /dev/shm region per rank and needs cross-memory attach,
  which containers often block (libfabric 5495).
- ``openmpi``: TCP is ``pml=ob1`` with ``btl=tcp,self,sm`` (``vader`` before 5.x, and when the major version is
  not known: 5.x registers ``vader`` as an alias of ``sm``, checked with 5.0.11) and the interface (name or
  CIDR) for both ``btl_tcp_if_include`` and ``oob_tcp_if_include``; EFA is ``pml=cm mtl=ofi
  mtl_ofi_provider_include=efa`` (UCX cannot drive EFA: ompi 9858) with ``btl=^openib,uct`` and
  ``osc=^ucx``. Exclusions, not inclusions, for components a build may lack: Open MPI aborts when an include
  list names a component it does not have (checked with 5.0.11: ``btl=self,openib`` aborted in MPI_Init).
  With one rank on every node (no traffic for shared memory) TCP goes through libfabric instead:
  ``pml=^ucx mtl=ofi mtl_ofi_provider_include=tcp`` + ``FI_TCP_IFACE``, the ob1 settings kept: the cm PML
  (priority 30) wins over ob1 (20) where the ofi MTL finds libfabric's tcp provider, and ob1 is chosen where it
  does not (checked: an unknown provider name falls back to ob1 and runs). Measured through ``mnp launch`` between
  two local nodes (bench/mpi_compare.py's C pingpong and osu_bw-style window): Open MPI 5 ob1 8.3-8.6 us and
  2,330-2,390 MB/s at 1 MiB, cm/ofi 6.8-7.2 us and 3,000-3,530 MB/s (MPICH ch4:ofi: 7.7-8.2 us, 3,440-3,510
  MB/s); Open MPI 4 (Debian, libfabric 1.17) ob1 7.1-7.9 us and 2,330-2,440 MB/s, cm/ofi 10.2-11.3 us and
  2,930-3,330 MB/s. ob1's own knobs (``btl_tcp_max_send_size``, ``eager_limit``, socket buffers, 2 links) changed
  nothing. Not with more ranks a node: cm sends node-local messages through the tcp provider too, over loopback
  (``mnp doctor`` shows it: "TCP over lo where shared memory was expected").
- ``impi`` (Intel MPI; ``intelmpi`` is another name for it): ``I_MPI_FABRICS=shm`` on one node, else
  ``shm:ofi`` with the libfabric provider named twice, ``I_MPI_OFI_PROVIDER`` (Intel MPI's) and ``FI_PROVIDER``
  (libfabric's own, which the ``impi-rt`` wheel's libfabric reads), ``tcp`` (+ ``FI_TCP_IFACE``) or ``efa``.
  Never MPICH's ``MPIR_CVAR_*``: Intel MPI has its own names. Checked with ``impi-rt`` 2021.18.1 from PyPI:
  2 ranks on one node with ``I_MPI_FABRICS=shm``, and 2 isolated nodes with ``shm:ofi`` over tcp, through mnp.
- EFA in every family: ``FI_EFA_USE_DEVICE_RDMA=1`` only when every node is known to support RDMA read (libfabric
  aborts the job if it is set on a device without it; unset, libfabric decides by device), and
  ``FI_EFA_FORK_SAFE=1 RDMAV_FORK_SAFE=1`` (Python forks: subprocess, multiprocessing; libfabric 6332) unless the
  kernel is 5.13 or newer, where copy-on-fork makes them unneeded, or the caller says otherwise.

Binding (``cpus_shared``): nodes that share one machine's cores -- local nodes, whose CPU sets are only their
init's affinity, which a binding MPI replaces (measured: Open MPI 5 bound node 1's rank to CPU 0 although node 1
owns CPU 1) -- each run a launcher or a library that binds its first rank to the first core it sees -- core 0 on
every node -- so
ranks of different nodes end up on one core (Open MPI 4 and 5 between two such nodes: ~4,000 us at 8 B instead of
~7 us). :func:`binding_env` turns binding off in every family's words: Open MPI 5 (PRRTE)
``PRTE_MCA_hwloc_default_binding_policy=none``, Open MPI 4 ``OMPI_MCA_hwloc_base_binding_policy=none`` (both
are set: the family does not tell the major, and each ignores the other's), Hydra (MPICH's ``mpiexec``)
``HYDRA_BINDING=none``, Intel MPI ``I_MPI_PIN=0`` (its library pins, also under mnp's PMI-1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from mnp.errors import SpecError
from mnp.fabric.efa import EfaReport

__all__ = [
    "MPI_FAMILIES",
    "TRANSPORTS",
    "TransportChoice",
    "binding_env",
    "canonical_family",
    "choose_transport",
    "fork_safety_needed",
]

MPI_FAMILIES = ("mpich", "openmpi", "impi", "intelmpi", "auto")
_CANONICAL = {"auto": "mpich", "intelmpi": "impi"}

# Binding off, per family (see the module docstring).
_UNBOUND = {"openmpi": {"PRTE_MCA_hwloc_default_binding_policy": "none",
                        "OMPI_MCA_hwloc_base_binding_policy": "none"},
            "mpich": {"HYDRA_BINDING": "none"},
            "impi": {"I_MPI_PIN": "0"}}


def canonical_family(mpi: str) -> str:
    """``auto`` -> ``mpich`` (mnp's default), ``intelmpi`` -> ``impi``; the others as they are."""
    return _CANONICAL.get(mpi, mpi)


def binding_env(mpi: str, cpus_shared: bool) -> tuple[dict[str, str], str]:
    """(environment, why) for rank binding: off when the nodes share cores, else left to the MPI."""
    if not cpus_shared:
        return {}, "left to the MPI (the nodes do not share cores)"
    family = canonical_family(mpi)
    env = dict(_UNBOUND[family])
    return env, ("off: the nodes are on one machine, their CPU sets are affinities an MPI's binding would step "
                 "out of, and each node would bind its first rank to core 0 "
                 "(" + " ".join(f"{k}={v}" for k, v in env.items()) + ")")
TRANSPORTS = ("auto", "tcp", "efa", "shm")


@dataclass(frozen=True)
class TransportChoice:
    inter_node: str  # "tcp" | "efa" | "none" (single node)
    intra_node: str  # "shm"
    why: str
    env: dict[str, str] = field(default_factory=dict)
    provider: str | None = None  # libfabric provider in use, where one is (None: Open MPI ob1, Intel MPI shm)
    iface: str | None = None  # interface (or CIDR, Open MPI) pinned for inter-node TCP, if any


def fork_safety_needed(kernel_release: str | None) -> bool:
    """rdma-core needs fork protection below Linux 5.13 (no copy-on-fork for pinned pages); unknown: assume so."""
    m = re.match(r"(\d+)\.(\d+)", kernel_release or "")
    return not m or (int(m.group(1)), int(m.group(2))) < (5, 13)


def _label(i: int, names: Sequence[str] | None) -> str:
    return f"node {i} ({names[i]})" if names and i < len(names) and names[i] else f"node {i}"


def choose_transport(mpi: str, transport: str, num_nodes: int, iface: str | None = None,
                     efa_nodes: Sequence[bool | EfaReport] | None = None, *, subnet: str | None = None,
                     openmpi_major: int | None = None, efa_rdma: Sequence[bool | None] | None = None,
                     fork_safe: bool | None = None, kernel_release: str | None = None,
                     node_names: Sequence[str] | None = None, cpus_shared: bool = False,
                     one_rank_per_node: bool = False) -> TransportChoice:
    """Decide the transport from the job's ``transport`` field and what the nodes have.

    ``efa_nodes``: per node, whether it has usable EFA (a bool or its :class:`EfaReport`, whose ``rdma_read``
    and ``problem`` are then used too). ``iface``: interface name for inter-node TCP; ``subnet``: the CIDR every
    node shares (used by Open MPI when no single name fits). ``openmpi_major``: 5 names the shared-memory BTL
    ``sm``, 4 ``vader``; unknown (None) gets ``vader``, which 5.x accepts as an alias. ``efa_rdma``: per node
    RDMA-read support, overriding the reports. ``fork_safe``: force the EFA fork-safety variables on or off; by
    default they are set unless ``kernel_release`` is 5.13 or newer. ``node_names``: hostnames, for messages.
    ``cpus_shared``: the nodes share one machine's cores; binding is turned off (:func:`binding_env`).
    ``one_rank_per_node``: no rank shares a node, so no traffic needs shared memory (Open MPI over TCP then goes
    through libfabric's tcp provider: see the module docstring).
    """
    if mpi not in MPI_FAMILIES:
        raise SpecError("mpi", f"'{mpi}' is not one of " + ", ".join(f"'{m}'" for m in MPI_FAMILIES))
    if transport not in TRANSPORTS:
        raise SpecError("transport", f"'{transport}' is not one of " + ", ".join(f"'{t}'" for t in TRANSPORTS))
    if num_nodes < 1:
        raise SpecError("nodes", f"must be at least 1, got {num_nodes}")
    reports = list(efa_nodes or [])
    has = [bool(r.usable) if isinstance(r, EfaReport) else bool(r) for r in reports]
    has += [False] * (num_nodes - len(has))
    rdma: list[bool | None] = list(efa_rdma) if efa_rdma is not None else [
        r.rdma_read if isinstance(r, EfaReport) else None for r in reports]
    rdma += [None] * (num_nodes - len(rdma))
    lacking = [i for i in range(num_nodes) if not has[i]]

    if transport == "efa":
        if lacking:
            i = lacking[0]
            r = reports[i] if i < len(reports) else None
            detail = f": {r.problem}" if isinstance(r, EfaReport) and r.problem else ""
            raise SpecError("transport", f"'efa' asked for, but {_label(i, node_names)} has no usable EFA "
                            f"device{detail}")
        inter, why = "efa", "asked for in the job (transport: efa); every node has EFA"
    elif transport == "tcp":
        inter, why = "tcp", "asked for in the job (transport: tcp)"
    elif transport == "shm":
        if num_nodes > 1:
            raise SpecError("transport", f"'shm' works within one node only; this job has {num_nodes} nodes "
                            "(use 'auto' or 'tcp')")
        inter, why = "none", "asked for in the job (transport: shm): one node, shared memory only"
    elif num_nodes == 1:
        inter, why = "none", "auto: one node, shared memory only"
    elif not lacking:
        inter, why = "efa", "auto: every node has EFA"
    elif len(lacking) == num_nodes:
        inter, why = "tcp", "auto: no node has EFA"
    else:
        inter, why = "tcp", f"auto: {_label(lacking[0], node_names)} has no EFA"

    env: dict[str, str] = {}
    provider: str | None = None
    pinned: str | None = None
    family = canonical_family(mpi)
    notes: list[str] = []
    if family == "mpich":
        env["MPIR_CVAR_CH4_NETMOD"] = "ofi"
        provider = "efa" if inter == "efa" else "tcp"
        env["FI_PROVIDER"] = provider
        if inter == "tcp" and iface:
            env["FI_TCP_IFACE"] = pinned = iface
        notes.append(f"MPICH ch4:ofi over libfabric {provider}" + (" (netmod idle: one node)"
                                                                     if inter == "none" else ""))
    elif family == "impi":
        if inter == "none":
            env["I_MPI_FABRICS"] = "shm"
            notes.append("Intel MPI shared memory only")
        else:
            provider = "efa" if inter == "efa" else "tcp"
            env["I_MPI_FABRICS"] = "shm:ofi"
            env["I_MPI_OFI_PROVIDER"] = env["FI_PROVIDER"] = provider
            if inter == "tcp" and iface:
                env["FI_TCP_IFACE"] = pinned = iface
            notes.append(f"Intel MPI shm:ofi over libfabric {provider}")
    else:  # openmpi
        # 5.x renamed vader to sm and keeps "vader" as an alias, so an unknown major gets the name both accept.
        sm = "sm" if openmpi_major is not None and openmpi_major >= 5 else "vader"
        where = iface or subnet
        if inter == "efa":
            provider = "efa"
            env.update({"OMPI_MCA_pml": "cm", "OMPI_MCA_mtl": "ofi", "OMPI_MCA_mtl_ofi_provider_include": "efa",
                        "OMPI_MCA_btl": "^openib,uct", "OMPI_MCA_osc": "^ucx"})
            if where:
                env["OMPI_MCA_oob_tcp_if_include"] = pinned = where
            notes.append("Open MPI cm/ofi over libfabric efa")
        elif inter == "tcp":
            env.update({"OMPI_MCA_pml": "ob1", "OMPI_MCA_btl": f"tcp,self,{sm}", "OMPI_MCA_osc": "^ucx"})
            if where:
                env["OMPI_MCA_btl_tcp_if_include"] = env["OMPI_MCA_oob_tcp_if_include"] = pinned = where
            if one_rank_per_node and iface:  # cm/ofi over libfabric tcp, ob1 if the build lacks it
                provider = "tcp"
                env.update({"OMPI_MCA_pml": "^ucx", "OMPI_MCA_mtl": "ofi", "OMPI_MCA_mtl_ofi_provider_include": "tcp",
                            "FI_TCP_IFACE": iface})
                notes.append(f"Open MPI cm/ofi over libfabric tcp (one rank a node; ob1 with btl tcp,self,{sm} "
                             "where the build has no ofi MTL)")
            else:
                notes.append(f"Open MPI ob1 with btl tcp,self,{sm}")
        else:
            env.update({"OMPI_MCA_pml": "ob1", "OMPI_MCA_btl": f"self,{sm}", "OMPI_MCA_osc": "^ucx"})
            notes.append(f"Open MPI ob1 with btl self,{sm}")

    if inter == "efa":
        if rdma and all(r is True for r in rdma[:num_nodes]):
            env["FI_EFA_USE_DEVICE_RDMA"] = "1"
            notes.append("device RDMA on (every node supports RDMA read)")
        else:
            notes.append("device RDMA left to libfabric (RDMA read not known on every node)")
        if fork_safe if fork_safe is not None else fork_safety_needed(kernel_release):
            env["FI_EFA_FORK_SAFE"] = "1"
            env["RDMAV_FORK_SAFE"] = "1"
    if inter == "tcp" and not pinned and num_nodes > 1:
        notes.append("no interface pinned")
    elif pinned and inter != "none":
        notes.append(f"on {pinned}")
    unbound, _ = binding_env(family, cpus_shared)
    if unbound:
        env.update(unbound)
        notes.append("the MPI's own binding off (nodes on one machine)")
    return TransportChoice(inter, "shm", f"{why}; " + ", ".join(notes), env, provider, pinned)
