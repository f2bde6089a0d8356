"""What a node says about itself in its hello (:func:`node_facts`), and the kernel's CPU list format.

Run by every agent at start-up, so this module stays light: the fabric decisions that read these facts
(:mod:`mnp.fabric.decide`) and the rank placement (:mod:`mnp.placement`) import it, not the other way round.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from mnp.errors import MnpError

__all__ = ["MAX_CPUS", "address_toward", "cpu_list", "node_facts", "parse_cpu_list"]


def node_facts(report_ifaces: bool) -> dict[str, Any]:
    """What this node tells the coordinator about its fabric (run by the agent; cheap: sysfs and statvfs)."""
    from mnp.fabric.efa import detect_efa
    from mnp.fabric.shm import shm_free

    try:
        total, free = shm_free("/dev/shm")
    except OSError:
        total = free = 0
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = list(range(os.cpu_count() or 1))
    facts: dict[str, Any] = {"shm_total": total, "shm_free": free, "kernel": os.uname().release,
                             "efa": detect_efa().to_dict(), "cpus": len(cpus), "cpu_list": cpu_list(cpus),
                             "cores": _cores(cpus), "boot_id": _boot_id()}
    if report_ifaces:
        try:
            from mnp.fabric.ifaces import local_ifaces

            facts["ifaces"] = [i.to_dict() for i in local_ifaces()]
        except MnpError as e:
            facts["ifaces_error"] = str(e)
    return facts


def address_toward(host: str) -> str | None:
    """This host's IPv4 address on the way to ``host`` (the kernel's route choice; no packet is sent), or None
    where there is no route."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))
            return str(s.getsockname()[0])
    except OSError:
        return None


def _cores(cpus: list[int]) -> list[list[int]]:
    """[cpu, package, core] of each CPU whose topology the kernel gives (for :mod:`mnp.placement`)."""
    from mnp.cluster.cpus import sysfs_core

    return [[cpu, *core] for cpu in cpus if (core := sysfs_core(cpu)) is not None]


def _boot_id() -> str | None:
    """This kernel's boot id: the same for every namespace and container on one machine, different elsewhere."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


#: the most CPUs a node's facts may name (Linux's own limit, CONFIG_NR_CPUS, is at most 8192): a node's hello is
#: a peer's word, and "0-4000000000" must not become a set of four billion
MAX_CPUS = 65536


def parse_cpu_list(text: str) -> set[int]:
    """``"0-2,5"`` -> ``{0, 1, 2, 5}``; malformed parts, and CPUs past :data:`MAX_CPUS`, are skipped."""
    out: set[int] = set()
    for part in (text or "")[:65536].split(","):
        lo, _, hi = part.strip().partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()) and len(hi or lo) <= 6 and int(hi or lo) < MAX_CPUS:
            out.update(range(int(lo), int(hi or lo) + 1))
    return out


def cpu_list(cpus: Sequence[int] | set[int] | None) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"`` (the kernel's cpulist format)."""
    ordered = sorted(set(cpus or ()))
    out: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)
