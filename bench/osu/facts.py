"""Where a figure came from: the MPI library, the path the messages took, and the machine (a collective call).

``transport`` names the path the messages took, not the settings in the environment: ``shm`` when every rank is
on one node (MPICH moves them through shared memory whatever ``FI_PROVIDER`` says; mnp sets a provider for the
network that such a job never uses), else the libfabric provider (``tcp``, ``efa``), else MPICH's netmod.
Machine facts are rank 0's node's: CPU model, cores, kernel, transparent huge pages, /dev/shm.
"""

from __future__ import annotations

import os
import platform
from typing import Any

__all__ = ["environment", "machine", "transport_of"]


def transport_of(nodes: int, env: dict[str, str]) -> str:
    if nodes <= 1:
        return "shm"
    return env.get("FI_PROVIDER") or env.get("MPIR_CVAR_CH4_NETMOD") or "network"


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    """This node's CPU, kernel, huge-page policy and /dev/shm (no MPI)."""
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor() or platform.machine())
    thp = _read("/sys/kernel/mm/transparent_hugepage/enabled").strip()
    try:
        st = os.statvfs("/dev/shm")
        shm = st.f_frsize * st.f_blocks
    except OSError:
        shm = None
    return {"cpu": cpu, "cpus": len(os.sched_getaffinity(0)), "kernel": platform.release(),
            "thp": thp[thp.find("[") + 1:thp.find("]")] if "[" in thp else thp or None, "dev_shm_bytes": shm}


def environment(comm: Any, path: Any) -> dict[str, Any]:
    from mpi4py import MPI

    levels = {MPI.THREAD_SINGLE: "single", MPI.THREAD_FUNNELED: "funneled", MPI.THREAD_SERIALIZED: "serialized",
              MPI.THREAD_MULTIPLE: "multiple"}

    hosts = comm.allgather(MPI.Get_processor_name())
    library = " ".join(MPI.Get_library_version().splitlines()[0].split())
    nodes = len(set(hosts))
    return {"mpi_library": library, "transport": transport_of(nodes, dict(os.environ)),
            "fi_provider": os.environ.get("FI_PROVIDER"), "netmod": os.environ.get("MPIR_CVAR_CH4_NETMOD"),
            "iface": os.environ.get("FI_TCP_IFACE"), "nodes": nodes, "ranks": comm.Get_size(),
            "hosts": sorted(set(hosts)), "mnp_job_id": os.environ.get("MNP_JOB_ID"),
            "python": platform.python_version(), "thread_level": levels.get(MPI.Query_thread(), "?"),
            **machine(), **path.info()}
