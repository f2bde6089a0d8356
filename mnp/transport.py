"""Transport selection: which fabric MPI uses between and within nodes, as one consistent environment."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import SpecError

__all__ = ["TransportChoice", "choose_transport"]


@dataclass(frozen=True)
class TransportChoice:
    inter_node: str  # "tcp" | "efa" | "none" (single node)
    intra_node: str  # "shm"
    why: str
    env: dict[str, str] = field(default_factory=dict)


def choose_transport(mpi: str, transport: str, num_nodes: int, iface: str | None = None,
                     efa_nodes: list[bool] | None = None) -> TransportChoice:
    """Decide the transport from the job's ``transport`` field and what the nodes have."""
    efa_nodes = efa_nodes or [False] * num_nodes
    if transport == "efa":
        missing = [i for i, has in enumerate(efa_nodes) if not has]
        if missing:
            raise SpecError("transport", f"'efa' asked for, but node {missing[0]} has no EFA device")
        inter, why = "efa", "asked for in the job (transport: efa); every node has EFA"
    elif transport == "tcp":
        inter, why = "tcp", "asked for in the job (transport: tcp)"
    elif transport == "shm":
        inter, why = "none", "asked for in the job (transport: shm): one node, shared memory only"
    elif num_nodes == 1:
        inter, why = "none", "auto: one node, shared memory only"
    elif all(efa_nodes):
        inter, why = "efa", "auto: every node has EFA"
    else:
        inter, why = "tcp", "auto: not every node has EFA"
    env: dict[str, str] = {}
    if mpi in ("mpich", "auto"):
        env["MPIR_CVAR_CH4_NETMOD"] = "ofi"
        env["FI_PROVIDER"] = "efa" if inter == "efa" else "tcp"
        if inter == "tcp" and iface:
            env["FI_TCP_IFACE"] = iface
    return TransportChoice(inter, "shm", why, env)
