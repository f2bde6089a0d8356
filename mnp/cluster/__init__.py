"""Cluster providers: where nodes come from and how an agent is started on each.

A provider turns "N nodes for job J" into running ``mnp agent`` processes, each handed its job handoff on stdin,
and later tears them down. Providers: :mod:`.local` (isolated namespaces on this machine, the default; plain
processes when not root).
"""

from __future__ import annotations

from mnp.cluster.base import Cluster, NodeInfo

__all__ = ["Cluster", "NodeInfo"]
