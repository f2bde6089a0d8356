"""Where ranks go: which node each rank runs on, and which CPUs it is bound to. Pure functions, no I/O.

Two levels, as ``srun --distribution=<nodes>:<within>`` has them:

- **over nodes** (:func:`rank_nodes`): ``block`` numbers the ranks node by node (node 0 gets ranks 0..k-1, the
  default of mpirun and srun), ``cyclic`` deals them round robin (rank 0 on node 0, rank 1 on node 1, ...; a node
  whose ranks are all dealt is skipped). How many ranks each node runs does not change.
- **within a node** (:func:`place`): each rank is mapped to a core of the node's own CPU set -- ``block`` in
  core order (rank i on the node's i-th core), ``cyclic`` round robin over the node's sockets -- then bound to
  that core (``core``), to the node's CPUs in that core's socket (``socket``), or not bound (``none``: the rank
  keeps the node's whole CPU set).

The mpirun and srun spellings (:data:`MAP_SPELLINGS`, :data:`BIND_SPELLINGS`): ``--map-by slot|core`` is
block:block, ``socket`` (``package``, ``numa``) block:cyclic, ``node`` cyclic:block; srun's ``block`` and
``cyclic`` are block:cyclic and cyclic:cyclic (srun distributes over sockets cyclically by default), and its
two-level forms are taken as written. ``--bind-to core|socket|none`` (``numa`` and ``package`` mean socket here:
mnp does not read NUMA nodes), srun's ``--cpu-bind cores|sockets|none`` the same.

``auto`` (the default) is what the MPI's own launcher does (:func:`resolve`): Open MPI binds to core for up to 2
ranks and to the package (socket) above, mapped the same way, and binds nothing on a node with more ranks than
cores (it calls that oversubscribed); Hydra (MPICH's ``mpiexec``) binds nothing, and neither did mnp's PMI-1
back-end for MPICH; Intel MPI pins in its library (``I_MPI_PIN``), left to it.

**Nodes that share CPUs.** Nodes of one machine (the same kernel ``boot_id``: local nodes, containers on one host)
are placed together: a core counts the ranks of every node of that machine, and each rank takes the least used
core of its own node's set, so ranks of different nodes do not stack on one core while free cores remain (local
nodes that each own distinct cores never meet; nodes that were each given every CPU are spread over them). Only
when ranks outnumber cores do they share one (wrapped round robin), and that is one warning for the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mnp.fabric.facts import cpu_list  # the kernel's CPU list format, also in every node's hello

__all__ = ["BIND_SPELLINGS", "MAP_SPELLINGS", "NodeCpus", "Placement", "Policy", "cpu_list", "mapping_of", "place",
           "resolve", "rank_nodes"]

#: every accepted ``bind_to`` spelling -> what it means (core | socket | none | auto)
BIND_SPELLINGS: dict[str, str] = {"auto": "auto", "none": "none", "core": "core", "cores": "core",
                                  "socket": "socket", "sockets": "socket", "package": "socket", "numa": "socket"}
#: every accepted ``map_by`` spelling -> (over nodes, within a node); None: auto
MAP_SPELLINGS: dict[str, tuple[str, str] | None] = {
    "auto": None, "slot": ("block", "block"), "core": ("block", "block"), "socket": ("block", "cyclic"),
    "package": ("block", "cyclic"), "numa": ("block", "cyclic"), "node": ("cyclic", "block"),
    "block": ("block", "cyclic"), "cyclic": ("cyclic", "cyclic"), "block:block": ("block", "block"),
    "block:cyclic": ("block", "cyclic"), "cyclic:block": ("cyclic", "block"), "cyclic:cyclic": ("cyclic", "cyclic")}


@dataclass(frozen=True)
class Policy:
    """A resolved binding policy: ``bind`` core | socket | none, ``nodes`` and ``within`` block | cyclic."""

    bind: str
    nodes: str = "block"
    within: str = "block"
    why: str = ""
    auto: bool = False  # Open MPI's default: nodes with more ranks than cores are not bound
    left_to_mpi: bool = False  # auto for an MPI that binds in its library (Intel MPI): mnp does not

    @property
    def map_by(self) -> str:
        return f"{self.nodes}:{self.within}"


def resolve(bind_to: str, map_by: str, family: str, size: int) -> Policy:
    """The policy for a job of ``size`` ranks of MPI ``family``, from its ``bind_to`` and ``map_by`` (any
    spelling above; a spelling that is not one is a ValueError)."""
    bind = BIND_SPELLINGS[bind_to]
    mapped = MAP_SPELLINGS[map_by]
    ompi_default = "core" if size <= 2 else "socket"
    if bind == "auto":
        if family == "openmpi":
            why = (f"Open MPI's default: core for up to 2 ranks, package (socket) above ({size} rank(s)), none on a "
                   "node with more ranks than cores")
            within = mapped[1] if mapped else ("block" if ompi_default == "core" else "cyclic")
            return Policy(ompi_default, mapped[0] if mapped else "block", within, why, auto=True)
        if family == "impi":
            return Policy("none", *(mapped or ("block", "block")), "Intel MPI's own pinning (I_MPI_PIN)",
                          left_to_mpi=True)
        why = ("Hydra's default (mpiexec binds nothing)" if family == "mpich"
               else f"the default for {family or 'this program'}: not bound")
        return Policy("none", *(mapped or ("block", "block")), why)
    nodes, within = mapped or ("block", "block" if bind != "socket" else "cyclic")
    return Policy(bind, nodes, within, f"--bind-to {bind_to}" + (f" --map-by {map_by}" if mapped else ""))


def rank_nodes(counts: Sequence[int], how: str = "block") -> list[list[int]]:
    """The ranks of each node (``counts[i]`` on node i): in blocks node by node, or dealt round robin."""
    if how == "block":
        out, first = [], 0
        for c in counts:
            out.append(list(range(first, first + c)))
            first += c
        return out
    out = [[] for _ in counts]
    rank = 0
    while rank < sum(counts):
        for i, c in enumerate(counts):
            if len(out[i]) < c:
                out[i].append(rank)
                rank += 1
    return out


def mapping_of(ranks: Sequence[Sequence[int]]) -> str:
    """MPICH's ``PMI_process_mapping`` for any rank layout: ``(vector,(firstnode,nnodes,ppn),...)``, where each
    block puts ppn consecutive ranks on each of nnodes consecutive nodes; a block layout is one block per run of
    equal counts, a cyclic one ``(0,N,1)`` per round."""
    node_of = {r: i for i, rs in enumerate(ranks) for r in rs}
    runs: list[list[int]] = []  # [node, ranks in a row]
    for r in range(len(node_of)):
        if runs and runs[-1][0] == node_of[r]:
            runs[-1][1] += 1
        else:
            runs.append([node_of[r], 1])
    blocks: list[list[int]] = []  # [first node, nodes, ppn]
    for node, ppn in runs:
        if blocks and blocks[-1][2] == ppn and blocks[-1][0] + blocks[-1][1] == node:
            blocks[-1][1] += 1
        else:
            blocks.append([node, 1, ppn])
    return "(vector," + ",".join(f"({a},{b},{c})" for a, b, c in blocks) + ")"


@dataclass(frozen=True)
class NodeCpus:
    """What a node says about its CPUs: the set it may use (its agent's affinity), each CPU's (package, core)
    where known, and the machine it is on (kernel boot id; None: unknown, a machine of its own)."""

    cpus: tuple[int, ...]
    cores: dict[int, tuple[int, int]] = field(default_factory=dict)
    machine: str | None = None


@dataclass
class Placement:
    """Where every rank is bound. ``cpus[rank]``: its CPUs, None where it is not bound (the node's whole set)."""

    policy: Policy
    cpus: dict[int, tuple[int, ...] | None]
    unbound_nodes: dict[int, str] = field(default_factory=dict)  # node -> why it is not bound (auto only)
    wrapped: list[str] = field(default_factory=list)  # one line per machine or node whose ranks share cores
    shared: list[list[int]] = field(default_factory=list)  # nodes placed together (one machine, shared CPUs)

    @property
    def bound(self) -> bool:
        return any(c is not None for c in self.cpus.values())

    @property
    def warning(self) -> str | None:
        """The one line to show when ranks had to share cores."""
        if not self.wrapped:
            return None
        more = f" (and {len(self.wrapped) - 1} more)" if len(self.wrapped) > 1 else ""
        return f"binding: {self.wrapped[0]}{more}"

    def lines(self, ranks: Sequence[Sequence[int]], node_cpus: Sequence[Sequence[int]], limit: int = 16) -> list[str]:
        """Per node: its CPUs and rank -> CPUs (at most ``limit`` ranks a node, then how many more)."""
        out = []
        for i, rs in enumerate(ranks):
            head = f"node {i} (CPUs {cpu_list(node_cpus[i]) or '?'}): "
            if i in self.unbound_nodes:
                out.append(head + f"not bound: {self.unbound_nodes[i]}")
                continue
            shown = [f"{r}->{cpu_list(c) if (c := self.cpus.get(r)) is not None else 'all'}" for r in rs[:limit]]
            out.append(head + "rank " + " ".join(shown) + (f" ... ({len(rs) - limit} more)" if len(rs) > limit
                                                             else ""))
        return out


def _core_key(node: NodeCpus, cpu: int) -> tuple[int, int, int]:
    """A CPU's core, comparable across nodes of one machine: (package, core, 0), or (-1, cpu, 1) when unknown."""
    known = node.cores.get(cpu)
    return (known[0], known[1], 0) if known else (-1, cpu, 1)


def _node_cores(node: NodeCpus, within: str) -> list[tuple[tuple[int, int, int], tuple[int, ...]]]:
    """The node's cores (key, its CPUs in the node's set), in mapping order: package and core order (block), or
    round robin over packages (cyclic: the first core of each package, then the second...)."""
    groups: dict[tuple[int, int, int], list[int]] = {}
    for cpu in sorted(node.cpus):
        groups.setdefault(_core_key(node, cpu), []).append(cpu)
    cores = sorted(groups.items())
    if within == "cyclic":
        seen: dict[int, int] = {}
        order = []
        for key, cpus in cores:
            order.append(((seen.get(key[0], 0), key[0]), key, cpus))
            seen[key[0]] = seen.get(key[0], 0) + 1
        return [(key, tuple(cpus)) for _, key, cpus in sorted(order)]
    return [(key, tuple(cpus)) for key, cpus in cores]


def _groups(nodes: Sequence[NodeCpus]) -> list[list[int]]:
    """Nodes placed together: those of one machine whose CPU sets overlap (transitively)."""
    out: list[list[int]] = []
    sets: list[set[int]] = []
    for i, n in enumerate(nodes):
        mine = set(n.cpus)
        joined = [g for g, members in enumerate(out) if n.machine is not None
                  and nodes[members[0]].machine == n.machine and sets[g] & mine]
        if not joined:
            out.append([i])
            sets.append(mine)
            continue
        first = joined[0]
        for g in reversed(joined[1:]):
            out[first] += out.pop(g)
            sets[first] |= sets.pop(g)
        out[first].append(i)
        sets[first] |= mine
    return [sorted(g) for g in out]


def place(policy: Policy, nodes: Sequence[NodeCpus], ranks: Sequence[Sequence[int]]) -> Placement:
    """Bind every rank (``ranks[i]``: node i's ranks, in local rank order) within its node's CPUs."""
    out = Placement(policy, {r: None for rs in ranks for r in rs})
    if policy.bind == "none":
        return out
    for group in _groups(nodes):
        if len(group) > 1:
            out.shared.append(group)
        orders = {i: _node_cores(nodes[i], policy.within) for i in group}
        if policy.auto:  # Open MPI's default does not bind an oversubscribed node
            cores = {key for i in group for key, _ in orders[i]}
            total = sum(len(ranks[i]) for i in group)
            for i in group:
                if len(ranks[i]) > len(orders[i]) or total > len(cores):
                    out.unbound_nodes[i] = (f"{len(ranks[i])} rank(s) on {len(orders[i])} core(s)" if
                                            len(ranks[i]) > len(orders[i]) else
                                            f"nodes {_names(group)} are one machine: {total} ranks on its "
                                            f"{len(cores)} core(s)") + " (Open MPI binds nothing when oversubscribed)"
            group = [i for i in group if i not in out.unbound_nodes]
        used: dict[tuple[int, int, int], int] = {}
        for i in group:
            order = orders[i]
            if not order:
                continue
            for rank in ranks[i]:
                pos = min(range(len(order)), key=lambda k: (used.get(order[k][0], 0), k))
                key, core_cpus = order[pos]
                used[key] = used.get(key, 0) + 1
                if policy.bind == "core":
                    out.cpus[rank] = core_cpus
                else:
                    out.cpus[rank] = tuple(c for c in sorted(nodes[i].cpus) if _core_key(nodes[i], c)[0] == key[0])
        if policy.bind == "core" and any(v > 1 for v in used.values()):
            total = sum(len(ranks[i]) for i in group)
            where = f"nodes {_names(group)} (one machine)" if len(group) > 1 else f"node {group[0]}"
            out.wrapped.append(f"{total} rank(s) on {len(used)} core(s) of {where}: ranks share cores, dealt round "
                               "robin")
    return out


def _names(group: Sequence[int]) -> str:
    return ", ".join(map(str, group[:8])) + (", ..." if len(group) > 8 else "")
