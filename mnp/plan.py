"""From a validated job to a plan: what every node runs, with which ranks, environment and transport.

Two steps, because one input is only known once the nodes are up:

1. :func:`resolve_nodes` (before bring-up; it lives with the spec, :mod:`mnp.spec.resolve`): apply
   ``node_ranges`` to the node count -- nested ranges override the ranges around them, every node must be
   covered -- giving each node its command, env and ``ranks_per_node`` (``None`` where the job leaves it to
   the node's CPU count). Errors here are spec errors: exit 2, before any node is created.
2. :func:`assign_ranks` (after every agent said hello): fix ranks per node, number the ranks in blocks node by
   node or round robin (``map_by``; MPICH's ``PMI_process_mapping`` says which), and build each node's
   environment contract. Which CPUs each rank is bound to is :mod:`mnp.placement`'s.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from mnp.control.messages import DependsOn, HealthCheck, ProcessStart
from mnp.placement import mapping_of, rank_nodes
from mnp.spec.processes import Dependency, ProcessSpec
from mnp.spec.resolve import NodeWork, resolve_nodes

__all__ = ["NodeWork", "NodePlan", "JobPlan", "resolve_nodes", "assign_ranks", "node_env", "ranks_per_node"]


@dataclass(frozen=True)
class NodePlan:
    index: int
    hostname: str
    address: str
    command: list[str]
    env: dict[str, str]
    ranks: list[int]
    processes: list[ProcessStart] = field(default_factory=list)
    ranks_depend_on: list[DependsOn] = field(default_factory=list)

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
    return [0 if not w.command else w.ranks_per_node or max(1, cpus[w.index]) for w in work]


def depends_on(deps: Sequence[Dependency], node: int) -> list[DependsOn]:
    """Dependencies as ``node``'s agent gets them (one naming this very node is a local one)."""
    return [DependsOn(d.name, d.condition, d.node if d.node != node else None) for d in deps]


def process_start(p: ProcessSpec, node: int) -> ProcessStart:
    """A job file's process as its node's agent gets it (the node's environment comes with ``Start``)."""
    h = p.health
    return ProcessStart(p.name, p.command, dict(p.env), p.essential, depends_on(p.depends_on, node),
                        HealthCheck(h.command, h.interval, h.timeout, h.retries, h.start_period) if h else None)


def assign_ranks(job_id: str, work: list[NodeWork], cpus: list[int], hostnames: list[str], addresses: list[str],
                 main_node: int, transport_env: dict[str, str], attempt: int = 1, over_nodes: str = "block",
                 ) -> JobPlan:
    """Fix ranks per node (the node's CPU count where the job left it open) and build each node's plan; the ranks
    are numbered node by node (``over_nodes`` block) or dealt round robin (cyclic, :func:`mnp.placement.rank_nodes`)."""
    nodes = []
    layout = rank_nodes(ranks_per_node(work, cpus), over_nodes)
    for w, ranks in zip(work, layout):
        env = {
            "PYTHONUNBUFFERED": "1",
            **transport_env,
            **w.env,
            **node_env(job_id, w.index, len(work), main_node, addresses[main_node], attempt),
        }
        nodes.append(NodePlan(w.index, hostnames[w.index], addresses[w.index], w.command, env, ranks,
                              [process_start(p, w.index) for p in w.processes], depends_on(w.ranks_depend_on, w.index)))
    kvsname = f"mnp_{job_id.replace(':', '_')}_{attempt}_{os.getpid()}"
    return JobPlan(job_id, kvsname, main_node, nodes, mapping_of(layout), attempt)
