"""The coordinator's decisions between bring-up and start that need the nodes' hellos: which cluster provider,
what each node runs, and the /dev/shm remount exchange. Pure functions over their inputs (the provider is only
made here, not started)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnp.control import messages as m
from mnp.coordinator.events import EventSink, Note
from mnp.fabric.shm import check_shm, shm_need
from mnp.plan import NodeWork

if TYPE_CHECKING:
    from mnp.cluster.base import Cluster
    from mnp.cluster.hosts import HostSpec
    from mnp.cluster.sshopts import SshOptions

__all__ = ["make_cluster", "shm_guess", "node_work", "short_nodes", "apply_remounts", "startup_hint_of"]


def make_cluster(job_id: str, n: int, hosts: list[HostSpec] | None, ssh: SshOptions | None, isolate: bool | None,
                 say: EventSink) -> Cluster:
    """Hosts when the job has them (through srun inside a Slurm allocation when asked, their pool agents with --via
    pool, else SSH), else local nodes
    (leftovers of dead coordinators removed first)."""
    if hosts is not None and ssh is not None and ssh.via == "srun":
        from mnp.cluster.slurm import SlurmCluster

        return SlurmCluster(job_id, hosts, ssh.remote_python)
    if hosts is not None and ssh is not None and ssh.via == "pool":
        from mnp.cluster.pool import PoolCluster

        return PoolCluster(job_id, hosts)
    if hosts is not None:
        from mnp.cluster.ssh import SshCluster  # only SSH jobs pay for it
        from mnp.cluster.sshopts import SshOptions

        return SshCluster(job_id, hosts, ssh or SshOptions())
    from mnp.cluster.local import clean_stale, local_cluster

    for short in clean_stale():
        say(Note("info", f"removed leftovers of an earlier local cluster ({short}) whose coordinator is gone"))
    return local_cluster(job_id, n, isolate)


def shm_guess(work: list[NodeWork], family: str, shm_size: int | None,
              node_cpus: dict[int, list[int]] | None = None) -> int:
    """The /dev/shm a local node is made with, before its agent said hello: ranks per node from the job, else
    from the CPUs the provider gives the node (else this machine's)."""
    cpus = max((len(c) for c in node_cpus.values()), default=0) if node_cpus else 0
    rpn = max(w.ranks_per_node or cpus or len(os.sched_getaffinity(0)) for w in work)
    return shm_need(rpn, family, shm_size)


def node_work(work: list[NodeWork], hellos: dict[int, m.Hello], hosts: list[HostSpec] | None) -> list[NodeWork]:
    """What each node runs, now that it said hello: its own command where it brought one (AWS Batch: the node
    range's container.command), and a host's slots where the job leaves ranks_per_node open."""
    work = [replace(w, command=hellos[w.index].command or w.command) for w in work]
    if hosts is not None:
        work = [w if w.ranks_per_node or not hosts[w.index].slots else
                replace(w, ranks_per_node=hosts[w.index].slots) for w in work]
    return work


def short_nodes(fabric: Any) -> dict[int, int]:
    """Nodes whose /dev/shm is too small -> the bytes they need."""
    return {i: int(s["need"]) for i, s in fabric.shm.items() if s["problem"]}


def apply_remounts(fabric: Any, remounted: dict[int, m.ShmRemounted]) -> None:
    """Look again at the nodes that answered a remount."""
    for i, got in remounted.items():
        s = fabric.shm[i]
        s.update(total=got.total, free=got.free)
        s["problem"] = check_shm(f"node {i}", got.total, got.free, s["need"])
        if s["problem"] and got.error:
            s["problem"] += f" (remount failed: {got.error})"
        elif not s["problem"]:
            s["remounted"] = True


def startup_hint_of(logs: Path, node: int, rank: int, info: dict[str, Any], job_env: dict[str, str]) -> str | None:
    """For a rank (or, ``rank`` -1, a launcher) that failed: if its stderr shows an MPI start-up failure, what
    interface and provider its ranks were given (:func:`mnp.fabric.decide.startup_hint`)."""
    from mnp.coordinator.output import log_name
    from mnp.fabric.decide import startup_hint

    names = [log_name(node, rank, "stderr")] if rank >= 0 else [p.name for p in logs.glob("*.err")]
    try:
        tail = "".join((logs / n).read_bytes()[-8192:].decode(errors="replace") for n in names if (logs / n).exists())
    except OSError:
        return None
    return startup_hint(info, tail, job_env)
