"""The interface every cluster provider implements."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Cluster", "NodeInfo", "agent_command"]


@dataclass(frozen=True)
class NodeInfo:
    index: int
    hostname: str
    address: str


def agent_command(python: str | None = None) -> list[str]:
    """How a node starts its agent. ``python -m mnp.node.agent`` is ``mnp agent`` without the CLI's imports."""
    return [python or sys.executable, "-m", "mnp.node.agent"]


class Cluster:
    """Base class: ``create`` nodes, ``start_agents`` with their handoffs, ``lost`` to poll for dead nodes,
    ``teardown`` always (idempotent, also after a failed ``create``)."""

    #: the address agents dial to reach the coordinator
    control_address: str = "127.0.0.1"
    #: the port the coordinator binds (0: any free port, handed to agents in their handoff)
    control_port: int = 0
    #: one-line note for the user when the nodes are not what they seem (e.g. not isolated)
    warning: str | None = None
    #: whether agents should list their interfaces (False where the provider made the network itself)
    probe_ifaces: bool = True
    #: whether each node has a /dev/shm of its own (telemetry then counts all of it, else only the job's files)
    shm_private: bool = False
    #: whether each agent is the init of its node's PID namespace, with the node's own /dev/shm: the kernel ends
    #: every process of the node with it, so it needs no watchdog (:mod:`mnp.node.watchdog`)
    ns_init: bool = False
    #: set where the nodes share one /tmp (nodes that are one machine): agents make their private directories
    #: under it (the provider removes it), and each node's processes get a TMPDIR of their own there, as on
    #: separate machines (PRRTE and PMIx name session files by PIDs, which PID namespaces repeat). None: each
    #: node's own temporary directory, and the node's TMPDIR as it is
    private_root: str | None = None
    #: whether the coordinator may start agents level by level, each dialling its parent in the control tree
    #: (:mod:`mnp.control.tree`); False where the nodes start at once and dial the coordinator (srun, AWS Batch)
    tree_ok: bool = True
    #: whether every node has an address (and ports) of its own, so a relay can bind the coordinator's port on it
    #: and its children can start at once with it (local isolated nodes); else each relay binds any free port and
    #: its children start once it said which
    own_addresses: bool = False
    #: the control tree's width this provider was made for (SSH: it dials only that many hosts itself); None: the
    #: job's --tree-width
    tree_width: int | None = None
    #: whether a job that does not name a width gets the default tree (32); False where every node shares this
    #: machine's CPUs (local nodes), so relays would only add hops: a star unless --tree-width asks
    tree_by_default: bool = True

    def spawn_spec(self, node: int) -> dict[str, Any] | None:
        """How a relay starts node ``node``'s agent itself (tree spawn; :mod:`mnp.node.spawner`), or None where
        the coordinator starts every agent (local nodes: forked here)."""
        return None

    def join_hint(self, node: int) -> str | None:
        """What the provider knows of why ``node``'s agent has not joined yet (a stuck-in-transit alert says it)."""
        return None

    def __init__(self, job_id: str, num_nodes: int) -> None:
        self.job_id = job_id
        self.num_nodes = num_nodes
        self.nodes: list[NodeInfo] = []
        self._agents: dict[int, subprocess.Popen[bytes]] = {}

    def keys(self) -> Any:
        """This job's CURVE keys (fresh ones; providers whose nodes start themselves derive them)."""
        from mnp.control.channel import make_keys

        return make_keys(self.num_nodes)

    def begin(self) -> None:
        """Start reaching the nodes ahead of :meth:`create`, in the background, where the provider can (SSH: dial
        and preflight every host), so the caller's own start-up overlaps it. Optional; ``create`` finishes what
        was begun, and ``teardown`` ends it also when ``create`` never came."""

    def create(self, shm_bytes: int | None, progress: Callable[[int, int], None] | None = None) -> list[NodeInfo]:
        """Make or reach the nodes. ``progress(ready, total)`` counts nodes that are ready, never ones that failed
        (a bring-up that fails must not have shown ``total/total``); a failure raises one error naming the node."""
        raise NotImplementedError

    def joined(self, hellos: dict[int, dict[str, Any]]) -> list[NodeInfo]:
        """Called once every agent said hello; the nodes as the job will know them."""
        return self.nodes

    def agent_argv(self, node: int) -> list[str]:
        raise NotImplementedError

    def start_agents(self, handoffs: dict[int, dict[str, Any]]) -> None:
        """Start every node's agent and hand it its handoff over stdin (never argv)."""
        for node, handoff in handoffs.items():
            p = subprocess.Popen(self.agent_argv(node), stdin=subprocess.PIPE, start_new_session=True)
            assert p.stdin is not None
            p.stdin.write(json.dumps(handoff).encode() + b"\n")
            p.stdin.close()
            self._agents[node] = p

    def lost(self) -> dict[int, int]:
        """Nodes whose agent process has ended, with its exit status."""
        return {n: p.returncode for n, p in self._agents.items() if p.poll() is not None}

    def wait_agents(self, timeout: float) -> None:
        import time

        deadline = time.monotonic() + timeout
        for p in self._agents.values():
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass

    def teardown(self) -> None:
        raise NotImplementedError
