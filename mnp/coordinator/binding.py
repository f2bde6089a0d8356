"""The job's CPU binding, decided once the nodes said hello: the policy (:func:`mnp.placement.resolve`), where
each rank goes (:func:`mnp.placement.place`, within each node's own CPU set, nodes of one machine placed
together), and who applies it -- mnp (the agent's ``sched_setaffinity`` for ranks it starts; ``taskset`` in each
rank's wrapper under a launcher) or the MPI's own launcher (``--bind-to``/``--map-by``, ``-bind-to``/``-map-by``).

The MPI binds only where it sees each node as it is: on nodes of different machines. Nodes that share a machine
(local nodes: their CPU sets are only their init's affinity, which hwloc ignores) would each bind their first rank
to the machine's core 0 (measured, Open MPI 5: 4,006 us at 8 B instead of 10 us unbound), so there the MPI's
binding stays off (:func:`mnp.fabric.transport.binding_env`) and mnp applies the placement itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mnp.fabric.decide import MAX_CPUS, parse_cpu_list
from mnp.placement import NodeCpus, Placement, Policy, cpu_list, place, resolve

__all__ = ["Binding", "decide_binding", "node_cpus", "one_machine"]

_FAMILY = {"openmpi": "Open MPI", "mpich": "Hydra", "impi": "Intel MPI"}


@dataclass
class Binding:
    policy: Policy
    placement: Placement
    by: str  # "mnp" (agent or rank wrapper) | "mpi" (the launcher's flags, or Intel MPI's library) | "none"
    why: str  # one line: what, by whom, and why
    lines: list[str] = field(default_factory=list)  # node -> rank -> CPUs
    shared: bool = False  # the nodes share a machine's CPUs: the MPI's own binding stays off, never told

    @property
    def launcher_binds(self) -> bool:
        """Whether an mpirun/mpiexec launcher is given binding flags (nodes of different machines, a policy that
        is not left to the MPI's library)."""
        return not self.shared and not self.policy.left_to_mpi and self.by in ("mpi", "none")

    @property
    def bind_cpus(self) -> dict[int, tuple[int, ...]]:
        """rank -> CPUs, for the ranks mnp binds itself."""
        if self.by != "mnp":
            return {}
        return {r: c for r, c in self.placement.cpus.items() if c is not None}

    @property
    def warning(self) -> str | None:
        return self.placement.warning

    def to_info(self) -> dict[str, Any]:
        return {"bind_to": self.policy.bind, "map_by": self.policy.map_by, "by": self.by, "why": self.why,
                "ranks": {str(r): cpu_list(c) if c is not None else None
                          for r, c in sorted(self.placement.cpus.items())},
                "unbound_nodes": {str(k): v for k, v in self.placement.unbound_nodes.items()},
                "wrapped": self.placement.wrapped}


def _span(group: list[int]) -> str:
    return f"{group[0]}-{group[-1]}" if group == list(range(group[0], group[-1] + 1)) else ",".join(map(str, group))


def _cores(listed: Any) -> dict[int, tuple[int, int]]:
    """A hello's ``cores`` (cpu, core, package triples), or nothing when it is not that: a node's facts are its
    agent's word, and a wrong shape must not stop the coordinator."""
    if not isinstance(listed, list) or len(listed) > MAX_CPUS:
        return {}
    out = {}
    for c in listed:
        if not (isinstance(c, (list, tuple)) and len(c) == 3
                and all(type(v) is int and 0 <= v < MAX_CPUS for v in c)):
            return {}
        out[c[0]] = (c[1], c[2])
    return out


def node_cpus(facts: Sequence[dict[str, Any]]) -> list[NodeCpus]:
    """Each node's CPUs, topology and machine, from its hello's facts (:func:`mnp.fabric.decide.node_facts`)."""
    out = []
    for f in facts:
        cores = _cores(f.get("cores"))
        out.append(NodeCpus(tuple(sorted(parse_cpu_list(str(f.get("cpu_list") or "")))), cores,
                            str(f["boot_id"]) if f.get("boot_id") else None))
    return out


def one_machine(nodes: Sequence[NodeCpus]) -> bool:
    """Whether two nodes of the job are on one machine (the same kernel)."""
    machines = [n.machine for n in nodes if n.machine]
    return len(machines) != len(set(machines))


def decide_binding(bind_to: str, map_by: str, family: str, launcher: str, nodes: Sequence[NodeCpus],
                   ranks: Sequence[Sequence[int]], shared: bool) -> Binding:
    """The job's binding. ``ranks[i]``: node i's ranks; ``shared``: the nodes share a machine's CPUs (the cluster
    says so, or two nodes have one boot id): the MPI's own binding is off and mnp places the ranks."""
    size = sum(len(r) for r in ranks)
    policy = resolve(bind_to, map_by, family, size)
    placement = place(policy, nodes, ranks)
    name = _FAMILY.get(family, family)
    if policy.left_to_mpi:
        by = "none" if shared else "mpi"
        why = ("none: the nodes share one machine's CPUs, so Intel MPI's own pinning is off (I_MPI_PIN=0)" if shared
               else f"{policy.why}, by Intel MPI on each node")
    elif policy.bind == "none":
        by, why = "none", f"none -- {policy.why}: each rank may use all of its node's CPUs"
    elif launcher == "mpirun" and not shared:
        by = "mpi"
        why = (f"{policy.bind}, mapped {policy.map_by} -- {policy.why}; applied by {name}'s launcher on each node "
               "(the CPUs below are what it should choose)")
    else:
        by = "mnp"
        how = "taskset in each rank's wrapper" if launcher == "mpirun" else "the agent's sched_setaffinity"
        why = (f"{policy.bind}, mapped {policy.map_by} -- {policy.why}; applied by mnp ({how}) within each "
               "node's own CPUs")
        if placement.shared:
            why += (f"; nodes {', '.join(_span(g) for g in placement.shared)} share one machine's CPUs: placed "
                    "together, so ranks of different nodes take different cores while there are enough")
        if shared:
            why += ("; the MPI's own binding is off (a node's CPUs here are its affinity, which the MPI's binding "
                    "would step out of)")
    lines = placement.lines(ranks, [n.cpus for n in nodes]) if by in ("mnp", "mpi") and not policy.left_to_mpi \
        else []
    return Binding(policy, placement, by, why, lines, shared)
