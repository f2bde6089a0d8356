"""``--dry-run``: what a launch would do -- nodes, ranks on each, commands, environment, MPI, transport asked --
worked out the way the coordinator would before bring-up, and printed. Nothing is made, no record written.

Ranks per node that the nodes decide (a job without ``ranks_per_node``) are shown as the count they would get:
a local node's share of this machine's CPUs, a host's slots, else "the host's CPUs".
"""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mnp.cli.layout import Job
    from mnp.cluster.hosts import HostSpec

__all__ = ["plan", "render"]


def _where(hosts: list[HostSpec] | None, isolate: bool | None, via: str | None = None) -> str:
    if hosts is not None:
        return via or "ssh"
    from mnp.cluster.local import namespaces_available

    return "local isolated" if isolate is not False and namespaces_available() else "local processes"


def _local_cpus(n: int, where: str) -> list[list[int]]:
    """The CPUs each local node would own: its share of this machine's (isolated nodes), else all of them."""
    cpus = sorted(os.sched_getaffinity(0))
    if where != "local isolated":
        return [cpus] * n
    from mnp.cluster.cpus import plan_node_cpus

    share = plan_node_cpus(cpus, n)
    return [share.get(i, cpus) for i in range(n)]


def _binding(job: Job, family: str, launcher: str, owned: list[list[int]] | None,
             ranks: list[list[int] | None]) -> dict[str, Any]:
    """The binding a launch would choose (local nodes: each rank's CPUs; hosts: decided when they answer)."""
    from mnp.coordinator.binding import decide_binding
    from mnp.placement import NodeCpus, resolve

    spec = job.spec
    if owned is None or any(r is None for r in ranks):
        policy = resolve(spec.bind_to, spec.map_by, family, sum(len(r or []) for r in ranks))
        why = f"none -- {policy.why}" if policy.bind == "none" else \
            f"{policy.bind}, mapped {policy.map_by} -- {policy.why}; each rank's CPUs are decided when the hosts answer"
        return {"bind_to": policy.bind, "map_by": policy.map_by, "by": None, "ranks": None, "why": why}
    from mnp.cluster.cpus import sysfs_core

    topo = {c: core for c in sorted({c for cpus in owned for c in cpus}) if (core := sysfs_core(c)) is not None}
    nodes = [NodeCpus(tuple(cpus), {c: topo[c] for c in cpus if c in topo}, "this machine") for cpus in owned]
    chosen = decide_binding(spec.bind_to, spec.map_by, family, launcher, nodes, [r or [] for r in ranks], True)
    return {**chosen.to_info(), "lines": chosen.lines}


def _control(n: int, hosts: list[HostSpec] | None, width: int | None) -> dict[str, Any]:
    """The control plane's shape: a star, or the tree's levels (local nodes are a star unless a width is given)."""
    from mnp.control.tree import DEFAULT_WIDTH, Tree

    k = width or (DEFAULT_WIDTH if hosts is not None else n)
    tree = Tree(max(1, n), k)
    levels = [len(level) for level in tree.levels()]
    return {"width": None if tree.star else k, "levels": levels,
            "relays": sum(1 for i in range(tree.n) if tree.children(i))}


def plan(job: Job, hosts: list[HostSpec] | None, isolate: bool | None,
         tree_width: int | None = None, via: str | None = None) -> dict[str, Any]:
    """The plan as data (``--dry-run --json`` prints it as it is)."""
    from mnp.launch.backends import check_layout, choose_mpi
    from mnp.spec.resolve import resolve_nodes

    spec = job.spec
    work = resolve_nodes(spec, job.source)
    mpi = choose_mpi(spec.mpi, spec.launcher, work[spec.main_node].command, job.source)
    check_layout(mpi, spec.map_by, job.source)
    from mnp.placement import rank_nodes, resolve

    where = _where(hosts, isolate, via)
    owned = _local_cpus(job.nodes, where) if hosts is None else None
    counts = [w.ranks_per_node if w.ranks_per_node is not None
              else (hosts[w.index].slots if hosts else len(owned[w.index]) if owned else None) for w in work]
    first = sum(c or 0 for c in counts)
    known = all(c is not None for c in counts)
    over = resolve(spec.bind_to, spec.map_by, mpi.family, first).nodes
    layout: list[list[int] | None] = list(rank_nodes([c or 0 for c in counts], over)) if known else \
        [list(range(sum(c or 0 for c in counts[:i]), sum(c or 0 for c in counts[:i + 1]))) if c is not None
         else None for i, c in enumerate(counts)]
    nodes = []
    for w, count, ranks in zip(work, counts, layout):
        nodes.append({"index": w.index, "host": hosts[w.index].target if hosts else f"node{w.index}",
                      "ranks": ranks, "ranks_from": "job" if w.ranks_per_node is not None else "slots" if hosts
                      and count else "cpus", "command": w.command, "env": w.env,
                      "processes": [{"name": pr.name, "command": pr.command, "essential": pr.essential,
                                     "depends_on": [_dep(d) for d in pr.depends_on]} for pr in w.processes],
                      "ranks_depend_on": [_dep(d) for d in w.ranks_depend_on]})
    return {"dry_run": True, "name": spec.name, "num_nodes": job.nodes, "main_node": spec.main_node,
            "ranks": first if known else None, "where": where, "mpi": mpi.family, "launcher": mpi.launcher,
            "mpi_why": mpi.why, "transport": spec.transport, "shm_size": spec.shm_size, "timeout": spec.timeout,
            "binding": _binding(job, mpi.family, mpi.launcher, owned, layout),
            "control": _control(job.nodes, hosts, tree_width), "nodes": nodes}


def _dep(d: Any) -> str:
    return f"{d.name}{'' if d.node is None else f'@node{d.node}'}:{d.condition}"


def _span(ranks: list[int] | None) -> str:
    if ranks is None:
        return "the host's CPUs"
    if not ranks:
        return "no ranks"
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    if ranks == list(range(ranks[0], ranks[-1] + 1)):
        return f"ranks {ranks[0]}-{ranks[-1]}"
    return "ranks " + ",".join(map(str, ranks[:6])) + (",..." if len(ranks) > 6 else "")


def _control_line(c: dict[str, Any]) -> str:
    if c["width"] is None:
        return "control    star: every agent dials the coordinator"
    return (f"control    tree of width {c['width']}: {len(c['levels'])} levels of agents "
            f"({', '.join(map(str, c['levels']))}), {c['relays']} of them relaying")


def render(p: dict[str, Any]) -> str:
    """The plan for people: one line per setting, one per node."""
    from mnp.fabric.shm import fmt_bytes

    per = {len(n["ranks"]) if n["ranks"] is not None else None for n in p["nodes"]}
    ranks = "unknown until the hosts answer" if p["ranks"] is None else str(p["ranks"])
    if len(per) == 1 and None not in per:
        ranks += f" ({per.pop()} per node)"
    transport = p["transport"] + (" (shm within a node; EFA between nodes when every node has it, else TCP)"
                                  if p["transport"] == "auto" else "")
    lines = [f"dry run: job {p['name']!r}, nothing started",
             f"nodes      {p['num_nodes']} ({p['where']}), main node {p['main_node']}",
             f"ranks      {ranks}",
             f"mpi        {p['mpi']} via {p['launcher']} ({p['mpi_why']})",
             f"transport  {transport}",
             f"binding    {p['binding']['why']}",
             *[f"           {line}" for line in p["binding"].get("lines", [])],
             *[f"           warning: {w}" for w in p["binding"].get("wrapped", [])],
             f"shm_size   {fmt_bytes(p['shm_size']) if p['shm_size'] else 'what MPI needs (at least 64 MiB)'}",
             f"timeout    {p['timeout']:g} s" if p["timeout"] else "timeout    none",
             _control_line(p["control"])]
    common = p["nodes"][0]["env"] if all(n["env"] == p["nodes"][0]["env"] for n in p["nodes"]) else None
    for n in p["nodes"]:
        after = f"  (after {', '.join(n['ranks_depend_on'])})" if n.get("ranks_depend_on") else ""
        lines.append(f"node {n['index']:<5} {n['host']:<12} {_span(n['ranks']):<14} {shlex.join(n['command'])}{after}")
        for pr in n.get("processes", []):
            deps = f"  (after {', '.join(pr['depends_on'])})" if pr["depends_on"] else ""
            kind = "" if pr["essential"] else ", non-essential"
            lines.append(" " * 11 + f"process {pr['name']}{kind}: {shlex.join(pr['command'])}{deps}")
        if common is None and n["env"]:
            lines.append(" " * 11 + "env " + " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(n["env"].items())))
    if common:
        lines.append("env        " + " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(common.items())))
    lines.append("           (every rank also gets PYTHONUNBUFFERED=1, MNP_* and AWS_BATCH_* variables, and the "
                 "transport's)")
    return "\n".join(lines)
