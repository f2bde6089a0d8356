"""Which CPUs each local node gets: whole physical cores while there are enough, distinct logical CPUs after
that, and every CPU for every node when there are more nodes than CPUs (:func:`plan_node_cpus`)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

__all__ = ["plan_node_cpus", "sysfs_core"]


def sysfs_core(cpu: int) -> tuple[int, int] | None:
    """(package, core) of a CPU from sysfs; None where the kernel does not say."""
    topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
    try:
        return int((topo / "physical_package_id").read_text()), int((topo / "core_id").read_text())
    except (OSError, ValueError):
        return None


def _cores(cpus: Collection[int], core_of: Callable[[int], tuple[int, int] | None]) -> list[list[int]]:
    """``cpus`` grouped by physical core (hyperthreads of one core together), in package and core order; CPUs of
    unknown topology last, each a core of its own."""
    groups: dict[tuple[int, int, int, int], list[int]] = {}
    for cpu in sorted(cpus):
        core = core_of(cpu)
        groups.setdefault((0, core[0], core[1], 0) if core else (1, 0, 0, cpu), []).append(cpu)
    return [groups[k] for k in sorted(groups)]


def _split(items: list[list[int]], parts: int) -> list[list[int]]:
    """``items`` in ``parts`` contiguous runs of near-equal length (the first ones one longer), flattened."""
    per, extra = divmod(len(items), parts)
    runs, at = [], 0
    for i in range(parts):
        n = per + (i < extra)
        runs.append([cpu for item in items[at:at + n] for cpu in item])
        at += n
    return runs


def plan_node_cpus(cpus: Collection[int], num_nodes: int,
                   core_of: Callable[[int], tuple[int, int] | None] = sysfs_core) -> dict[int, list[int]]:
    """Which of ``cpus`` (the CPUs this process may use) each local node gets.

    Whole physical cores per node, in contiguous runs, while there are enough; else distinct logical CPUs; with
    more nodes than CPUs, every node gets all of them and the kernel spreads the load
    (:attr:`LocalCluster.cpus_shared`). Not round robin (node ``i`` on CPU ``i % n``): nodes pinned to one CPU
    beside nodes pinned to another made Open MPI 5's remote daemons exit 255 in 6 of 8 launches of 3 nodes x 2
    ranks on 2 CPUs (0 of 8 with every node on every CPU). ``core_of(cpu)`` gives a CPU's (package, core).
    """
    cores = _cores(cpus, core_of)
    flat = [cpu for core in cores for cpu in core]
    if not flat or num_nodes < 1:
        return {}
    if num_nodes <= len(cores):
        runs = _split(cores, num_nodes)
    elif num_nodes <= len(flat):
        runs = _split([[cpu] for cpu in flat], num_nodes)
    else:
        runs = [list(flat) for _ in range(num_nodes)]
    return dict(enumerate(runs))
