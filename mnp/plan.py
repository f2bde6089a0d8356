"""From a validated job to a plan: what every node runs, with which ranks, environment and transport.

Two steps, because one input is only known once the nodes are up:

1. :func:`resolve_nodes` (before bring-up): apply ``node_ranges`` to the node count -- nested ranges override the
   ranges around them, every node must be covered -- giving each node its command, env and ``ranks_per_node``
   (``None`` where the job leaves it to the node's CPU count). Errors here are spec errors: exit 2, before any
   node is created.
2. :func:`assign_ranks` (after every agent said hello): fix ranks per node, number the ranks in blocks node by
   node (MPICH's block ``PMI_process_mapping``), and build each node's environment contract.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from mnp.errors import SpecError
from mnp.node.pmi import process_mapping
from mnp.spec.model import JobSpec

__all__ = ["NodeWork", "NodePlan", "JobPlan", "resolve_nodes", "assign_ranks", "node_env", "ranks_per_node"]


@dataclass(frozen=True)
class NodeWork:
    """What one node is asked to run, before its CPU count is known."""

    index: int
    command: list[str]
    env: dict[str, str]
    ranks_per_node: int | None


@dataclass(frozen=True)
class NodePlan:
    index: int
    hostname: str
    address: str
    command: list[str]
    env: dict[str, str]
    ranks: list[int]

    @property
    def nranks(self) -> int:
        return len(self.ranks)


@dataclass(frozen=True)
class JobPlan:
    job_id: str
    kvsname: str
    main_node: int
    nodes: list[NodePlan]
    mapping: str
    attempt: int = 1
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(n.nranks for n in self.nodes)

    def where(self, rank: int) -> int:
        for n in self.nodes:
            if rank in n.ranks:
                return n.index
        raise KeyError(rank)


def resolve_nodes(spec: JobSpec, source: str | None = None) -> list[NodeWork]:
    """Apply node ranges to ``spec.nodes`` nodes. Raises SpecError naming the field at fault."""
    n = spec.nodes
    if spec.main_node >= n:
        raise SpecError("main_node", f"is {spec.main_node}, but the job has {n} node(s) (0..{n - 1})", source)
    if spec.transport == "shm" and n > 1:
        raise SpecError("transport", f"'shm' works within one node only; this job has {n} nodes "
                        "(use 'auto' or 'tcp')", source)
    spans: list[tuple[int, range]] = []
    for i, nr in enumerate(spec.node_ranges):
        try:
            spans.append((i, nr.target_nodes.indices(n)))
        except ValueError as e:
            raise SpecError(f"node_ranges[{i}].target_nodes", str(e), source) from None
    # Partial overlaps are ambiguous: a range must be disjoint from, or nested in, every other.
    for a, ra in spans:
        for b, rb in spans:
            if a < b and set(ra) & set(rb):
                inner = set(ra) <= set(rb) or set(rb) <= set(ra)
                if not inner:
                    raise SpecError(f"node_ranges[{b}].target_nodes",
                                    f"{spec.node_ranges[b].target_nodes} overlaps node_ranges[{a}] "
                                    f"({spec.node_ranges[a].target_nodes}) without being nested in it", source)
                if ra == rb:
                    raise SpecError(f"node_ranges[{b}].target_nodes",
                                    f"names the same nodes as node_ranges[{a}]", source)
    owner: dict[int, int] = {}
    for i, r in sorted(spans, key=lambda s: -len(s[1])):  # widest first, so nested (narrower) ranges win
        for node in r:
            owner[node] = i
    if spans:
        missing = [i for i in range(n) if i not in owner]
        if missing:
            raise SpecError("node_ranges", f"node(s) {_fold(missing)} are not covered by any range", source)
    out = []
    for node in range(n):
        rng = spec.node_ranges[owner[node]] if node in owner else None
        command = (rng.command if rng and rng.command else None) or spec.command
        if not command:
            raise SpecError(f"node_ranges[{owner[node]}].command", f"node {node} has no command "
                            "(give one here or at the top level)", source)
        env = {**spec.env, **(rng.env if rng else {})}
        rpn = (rng.ranks_per_node if rng and rng.ranks_per_node else None) or spec.ranks_per_node
        out.append(NodeWork(node, command, env, rpn))
    return out


def _fold(nums: list[int]) -> str:
    parts: list[str] = []
    for x in nums:
        if parts and parts[-1].split("-")[-1] == str(x - 1):
            parts[-1] = parts[-1].split("-")[0] + f"-{x}"
        else:
            parts.append(str(x))
    return ",".join(parts)


def node_env(job_id: str, node: int, num_nodes: int, main_node: int, main_addr: str, attempt: int) -> dict[str, str]:
    """The environment contract every rank on ``node`` sees (AWS Batch names included)."""
    env = {
        "MNP_JOB_ID": job_id,
        "MNP_NODE_INDEX": str(node),
        "MNP_NUM_NODES": str(num_nodes),
        "MNP_MAIN_NODE_INDEX": str(main_node),
        "MNP_MAIN_NODE_ADDR": main_addr,
        "MNP_ATTEMPT": str(attempt),
        "AWS_BATCH_JOB_ID": f"{job_id}#{node}",
        "AWS_BATCH_JOB_NODE_INDEX": str(node),
        "AWS_BATCH_JOB_NUM_NODES": str(num_nodes),
        "AWS_BATCH_JOB_MAIN_NODE_INDEX": str(main_node),
        "AWS_BATCH_JOB_ATTEMPT": str(attempt),
    }
    if node != main_node:
        env["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] = main_addr
    return env


def ranks_per_node(work: list[NodeWork], cpus: list[int]) -> list[int]:
    """Ranks on each node: the job's ``ranks_per_node`` where it gives one, else the node's CPU count (its own CPU
    set on local nodes). The one place this is decided."""
    return [w.ranks_per_node or max(1, cpus[w.index]) for w in work]


def assign_ranks(job_id: str, work: list[NodeWork], cpus: list[int], hostnames: list[str], addresses: list[str],
                 main_node: int, transport_env: dict[str, str], attempt: int = 1) -> JobPlan:
    """Fix ranks per node (the node's CPU count where the job left it open) and build each node's plan."""
    nodes = []
    next_rank = 0
    for w, count in zip(work, ranks_per_node(work, cpus)):
        ranks = list(range(next_rank, next_rank + count))
        next_rank += count
        env = {
            "PYTHONUNBUFFERED": "1",
            **transport_env,
            **w.env,
            **node_env(job_id, w.index, len(work), main_node, addresses[main_node], attempt),
        }
        nodes.append(NodePlan(w.index, hostnames[w.index], addresses[w.index], w.command, env, ranks))
    kvsname = f"mnp_{job_id}_{attempt}_{os.getpid()}"
    return JobPlan(job_id, kvsname, main_node, nodes, process_mapping([n.nranks for n in nodes]), attempt)
