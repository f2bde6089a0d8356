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


def _where(hosts: list[HostSpec] | None, isolate: bool | None) -> str:
    if hosts is not None:
        return "ssh"
    from mnp.cluster.local import namespaces_available

    return "local isolated" if isolate is not False and namespaces_available() else "local processes"


def _local_cpus(n: int, where: str) -> list[int]:
    cpus = os.sched_getaffinity(0)
    if where != "local isolated":
        return [len(cpus)] * n
    from mnp.cluster.cpus import plan_node_cpus

    share = plan_node_cpus(cpus, n)
    return [len(share.get(i, cpus)) for i in range(n)]


def plan(job: Job, hosts: list[HostSpec] | None, isolate: bool | None) -> dict[str, Any]:
    """The plan as data (``--dry-run --json`` prints it as it is)."""
    from mnp.launch.backends import choose_mpi
    from mnp.spec.resolve import resolve_nodes

    spec = job.spec
    work = resolve_nodes(spec, job.source)
    mpi = choose_mpi(spec.mpi, spec.launcher, work[spec.main_node].command, job.source)
    where = _where(hosts, isolate)
    cpus = _local_cpus(job.nodes, where) if hosts is None else [None] * job.nodes
    nodes, first = [], 0
    for w in work:
        count = w.ranks_per_node if w.ranks_per_node is not None else (hosts[w.index].slots if hosts
                                                                       else cpus[w.index])
        ranks = list(range(first, first + count)) if count is not None else None
        first += count or 0
        nodes.append({"index": w.index, "host": hosts[w.index].target if hosts else f"node{w.index}",
                      "ranks": ranks, "ranks_from": "job" if w.ranks_per_node else "slots" if hosts and count
                      else "cpus", "command": w.command, "env": w.env,
                      "processes": [{"name": pr.name, "command": pr.command, "essential": pr.essential,
                                     "depends_on": [_dep(d) for d in pr.depends_on]} for pr in w.processes],
                      "ranks_depend_on": [_dep(d) for d in w.ranks_depend_on]})
    known = all(n["ranks"] is not None for n in nodes)
    return {"dry_run": True, "name": spec.name, "num_nodes": job.nodes, "main_node": spec.main_node,
            "ranks": first if known else None, "where": where, "mpi": mpi.family, "launcher": mpi.launcher,
            "mpi_why": mpi.why, "transport": spec.transport, "shm_size": spec.shm_size, "timeout": spec.timeout,
            "nodes": nodes}


def _dep(d: Any) -> str:
    return f"{d.name}{'' if d.node is None else f'@node{d.node}'}:{d.condition}"


def _span(ranks: list[int] | None) -> str:
    if ranks is None:
        return "the host's CPUs"
    if not ranks:
        return "no ranks"
    return f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {ranks[0]}-{ranks[-1]}"


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
             f"shm_size   {fmt_bytes(p['shm_size']) if p['shm_size'] else 'what MPI needs (at least 64 MiB)'}",
             f"timeout    {p['timeout']:g} s" if p["timeout"] else "timeout    none"]
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
