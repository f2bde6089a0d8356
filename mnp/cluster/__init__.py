"""Cluster providers: where nodes come from and how an agent is started on each.

A provider turns "N nodes for job J" into running ``mnp agent`` processes, each handed its job handoff on stdin,
and later tears them down. Providers: :mod:`.local` (isolated namespaces on this machine, the default; plain
processes when not root).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mnp.cluster.base import Cluster, NodeInfo

__all__ = ["Cluster", "NodeInfo"]


def __getattr__(name: str) -> Any:
    # on first use: every SSH or srun agent imports this package (ssh_task, srun_task) and needs none of base
    if name in __all__:
        from mnp.cluster import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
