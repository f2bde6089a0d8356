"""A job's control plane opened and its first agents started: CURVE keys, the control tree, the coordinator's
channel and the handoffs level by level (:class:`Levels`).

The job's bring-up does this (:mod:`mnp.coordinator.job`), or, for a pool's agents, the CLI before it loads the
rest of the coordinator (:func:`prestart`): the forks, the agents' start and their hellos then overlap the
coordinator's own imports and the job's record, and the job adopts what was opened. Only light modules here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mnp import config
from mnp.cluster.base import Cluster, NodeInfo
from mnp.control.channel import CoordinatorChannel
from mnp.control.tree import DEFAULT_WIDTH, Tree
from mnp.errors import MnpError

__all__ = ["Control", "Levels", "handoff_settings", "open_control", "prestart"]


@dataclass
class Control:
    """What :func:`open_control` made: the tree, the bound channel, and who starts when."""

    tree: Tree
    chan: CoordinatorChannel
    levels: Levels
    nodes: list[NodeInfo] | None = None  # the cluster's nodes, when this was opened ahead of the job

    def close(self) -> None:
        if not self.chan.sock.closed:
            self.chan.close()


def open_control(cluster: Cluster, job_id: str, n: int, tree_width: int | None,
                 settings: dict[str, Any]) -> Control:
    """Keys, tree and channel for ``n`` nodes of ``cluster`` (made: :meth:`Cluster.create` ran), and the first
    level of agents started. ``settings``: what every handoff carries (:func:`handoff_settings`)."""
    keys = cluster.keys()
    width = cluster.tree_width or tree_width or (DEFAULT_WIDTH if cluster.tree_by_default else n)
    tree = Tree(n, width if cluster.tree_ok else max(width, n))
    chan = CoordinatorChannel(keys, cluster.control_address, cluster.control_port, tree)
    try:
        common = {"job_id": job_id, **settings, "report_ifaces": cluster.probe_ifaces,
                  "shm_private": cluster.shm_private, "private_root": cluster.private_root,
                  **({"ns_init": True} if cluster.ns_init else {})}
        levels = Levels(keys, chan, tree, common, [n.address for n in cluster.nodes] if cluster.own_addresses
                        else None, cluster.spawn_spec)
        cluster.start_agents(levels.first())
    except BaseException:
        chan.close()
        raise
    return Control(tree, chan, levels)


def prestart(cluster: Cluster, job_id: str, n: int, tree_width: int | None) -> Control | None:
    """The control opened and the first agents started ahead of the job, with the settings the job will read
    (its options left as they are: the environment, else the defaults). For a pool's agents: a message each, no
    session to open. None when the nodes cannot be had now: the job's own bring-up then meets the same problem
    and reports it as the job's failure."""
    try:
        nodes = cluster.create(None)
        control = open_control(cluster, job_id, n, tree_width, handoff_settings())
    except MnpError:
        return None
    control.nodes = nodes
    return control


def handoff_settings(heartbeat_s: float | None = None, dead_s: float | None = None,
                     telemetry_s: float | None = None) -> dict[str, Any]:
    """The clocks every agent is handed: the job's own values where it has them, else the environment
    (``MNP_HEARTBEAT``, ``MNP_DEAD_AFTER``, ``MNP_TELEMETRY_INTERVAL``), else the defaults; read the way the job's
    engine reads them (:meth:`~mnp.coordinator.job.LaunchRequest.timing`)."""
    from mnp.node.telemetry import telemetry_interval

    return {"heartbeat_s": config.setting("heartbeat", heartbeat_s), "dead_s": config.setting("dead_after", dead_s),
            "telemetry_s": telemetry_s if telemetry_s is not None else telemetry_interval()}


class Levels:
    """Which agents start when: the top nodes at once, each relay's children once it said hello with the
    endpoint they dial (:mod:`mnp.control.tree`). Each handoff names the server key its agent dials, and a relay's
    gets its children's public keys (the only ones it admits)."""

    def __init__(self, keys: Any, chan: CoordinatorChannel, tree: Tree, common: dict[str, Any],
                 addresses: list[str] | None = None,
                 spawn: Callable[[int], dict[str, Any] | None] | None = None) -> None:
        self.keys, self.tree, self.common = keys, tree, common
        # tree spawn (SSH): a relay starts its children itself; their handoffs travel inside its own, down the
        # same encrypted channel that carries the relay's (the relay is trusted with its subtree's keys, as it
        # speaks for its subtree anyway)
        self.spawn = spawn if spawn is not None and not tree.star and spawn(tree.n - 1) is not None else None
        self.endpoint = chan.endpoint
        self.started: set[int] = set()
        # nodes with addresses of their own: each relay binds the coordinator's port on its node, and every agent
        # starts at once (its parent's endpoint is known); ZeroMQ dials again until the relay is up
        self.addresses = addresses
        self.port = int(chan.endpoint.rsplit(":", 1)[1])

    def _handoff(self, node: int, endpoint: str, server_public: str) -> dict[str, Any]:
        h = {**self.keys.agent_handoff(node), **self.common, "endpoint": endpoint, "node": node,
             "server_public": server_public}
        if children := self.tree.children(node):
            h["tree"] = [self.tree.n, self.tree.width]
            h["children"] = {str(c): self.keys.agents[c][0].decode() for c in children}
            if self.addresses is not None:
                h["relay_port"] = self.port
            if self.spawn is not None:
                server = self.keys.agents[node][0].decode()
                h["spawn"] = {str(c): {**(self.spawn(c) or {}), "handoff": self._handoff(c, "", server)}
                              for c in children}
        return h

    def first(self) -> dict[int, dict[str, Any]]:
        if self.spawn is not None:  # the tops here; every other node inside its relay's handoff
            self.started.update(range(self.tree.n))
            return {i: self._handoff(i, self.endpoint, self.keys.server_public.decode()) for i in self.tree.tops()}
        if self.addresses is not None:
            self.started.update(range(self.tree.n))
            return {i: self._handoff(i, self.endpoint, self.keys.server_public.decode()) if p is None
                    else self._handoff(i, f"tcp://{self.addresses[p]}:{self.port}", self.keys.agents[p][0].decode())
                    for i in range(self.tree.n) for p in [self.tree.parent(i)]}
        tops = self.tree.tops()
        self.started.update(tops)
        return {i: self._handoff(i, self.endpoint, self.keys.server_public.decode()) for i in tops}

    def below(self, node: int, relay: str | None) -> dict[int, dict[str, Any]]:
        """The handoffs of ``node``'s children, once (none before it names a relay endpoint)."""
        children = [c for c in self.tree.children(node) if c not in self.started]
        if not children or relay is None or not _endpoint(relay):
            return {}
        self.started.update(children)
        server = self.keys.agents[node][0].decode()
        return {c: self._handoff(c, relay, server) for c in children}


def _endpoint(text: str | None) -> bool:
    """``tcp://HOST:PORT`` with a port number (a relay's word for where its children dial it)."""
    if not text or not text.startswith("tcp://") or len(text) > 300:
        return False
    host, _, port = text[6:].rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536 and not any(c.isspace() for c in host)
