"""AWS Batch multi-node parallel containers: ``mnp node``, the same entry point on every node.

Batch starts one container per node, main node first, children after it in no set order, and tells each its place
through the environment (``AWS_BATCH_JOB_NODE_INDEX``, ``AWS_BATCH_JOB_MAIN_NODE_INDEX``,
``AWS_BATCH_JOB_NUM_NODES``, and on children ``AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS``).

- The **main node** runs the coordinator on a fixed port (``MNP_PORT``, default 8740) and its own agent, and
  waits for every child to dial in before a deadline (``--join-timeout``, default 600 s), showing who has joined
  and naming who has not when it gives up. The job's exit code is the main container's exit code.
- A **child** runs only the agent, which dials the main node and keeps dialling with exponential backoff (ZeroMQ
  reconnects, 0.1 s up to 5 s) until the deadline. It exits when the main node says so, or when the main node
  falls silent (``--dead-after``, default 15 s) -- the orphaned children Batch itself leaves running.

Every node lists its interfaces when it joins (``report_ifaces``: the main node's agent through the provider's
``probe_ifaces``, each child's in :func:`run_child`), so the interface MPI uses between nodes is chosen from the
subnets every node shares and pinned in each MPI family's words -- never left to the MPI, which on a subnet without
a default route picked ``lo`` and every rank died in ``MPI_Init`` (MPICH: ``OFI call tinjectdata failed (default
nic=lo: Invalid argument)``).

Nothing secret is in the image: the job's CURVE keys are derived on every node from ``MNP_JOB_SECRET``, which the
job definition passes in (``secrets`` from Secrets Manager, or ``environment``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mnp.cluster.base import Cluster, NodeInfo, agent_command
from mnp.errors import UsageError

__all__ = ["BatchNode", "batch_node", "BatchMainCluster", "run_child", "main_bind_address", "reexec_without_secret",
           "DEFAULT_PORT"]

DEFAULT_PORT = 8740


@dataclass(frozen=True)
class BatchNode:
    index: int
    main: int
    num_nodes: int
    main_address: str | None  # children only
    job_id: str
    attempt: int
    secret: str

    @property
    def is_main(self) -> bool:
        return self.index == self.main


def _int(environ: Mapping[str, str], name: str, low: int = 0) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        raise UsageError(f"{name} is not set: `mnp node` runs inside an AWS Batch multi-node job "
                         "(use `mnp launch` elsewhere)")
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{name}: {raw!r} is not a number") from None
    if value < low:
        raise UsageError(f"{name}: must be at least {low}, got {value}")
    return value


SECRET_FD_VAR = "MNP_JOB_SECRET_FD"


def reexec_without_secret(args: list[str]) -> None:
    """Start ``mnp ARGS`` afresh without ``MNP_JOB_SECRET`` in its environment, the secret on a pipe instead.

    Removing a variable from a running process is not enough: /proc/PID/environ still shows the environment the
    process started with, to every process of its user -- the ranks included. After this exec it shows none. A
    no-op when the variable is not set."""
    secret = os.environ.get("MNP_JOB_SECRET")
    if not secret:
        return
    r, w = os.pipe()
    os.write(w, secret.encode())
    os.close(w)
    os.set_inheritable(r, True)
    env = {k: v for k, v in os.environ.items() if k != "MNP_JOB_SECRET"}
    env[SECRET_FD_VAR] = str(r)
    os.execve(sys.executable, [sys.executable, "-m", "mnp", *args], env)


def batch_node(environ: Mapping[str, str]) -> BatchNode:
    """This container's place in the job, from Batch's variables; one-line errors naming the variable."""
    num = _int(environ, "AWS_BATCH_JOB_NUM_NODES", 1)
    index = _int(environ, "AWS_BATCH_JOB_NODE_INDEX")
    main = _int(environ, "AWS_BATCH_JOB_MAIN_NODE_INDEX")
    for name, v in (("AWS_BATCH_JOB_NODE_INDEX", index), ("AWS_BATCH_JOB_MAIN_NODE_INDEX", main)):
        if v >= num:
            raise UsageError(f"{name}: {v} is not below AWS_BATCH_JOB_NUM_NODES ({num})")
    addr = environ.get("AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS") or None
    if index != main and not addr:
        raise UsageError("AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS is not set on a child node")
    secret = environ.get("MNP_JOB_SECRET", "")
    if environ.get(SECRET_FD_VAR):  # handed over by reexec_without_secret
        fd = int(environ[SECRET_FD_VAR])
        with os.fdopen(fd, "rb") as pipe:
            secret = pipe.read(1 << 16).decode(errors="replace")
    if len(secret) < 16:
        raise UsageError("MNP_JOB_SECRET: set it (16+ characters, the same on every node) through the job "
                         "definition's secrets or environment; it authenticates the nodes to each other")
    job_id = environ.get("AWS_BATCH_JOB_ID", "batch").split("#")[0].split(":")[0]
    attempt = int(environ.get("AWS_BATCH_JOB_ATTEMPT", "1") or 1)
    return BatchNode(index, main, num, addr, job_id, attempt, secret)


class BatchMainCluster(Cluster):
    """The main node's view: children start themselves and dial in; this node's own agent is started here."""

    tree_ok = False  # the nodes start at once (srun, Batch) and dial the coordinator: a star
    probe_ifaces = True  # Batch made the network, not mnp: every node lists its interfaces (children: run_child)
    shm_private = True  # each container has its own /dev/shm (sharedMemorySize)

    def __init__(self, job_id: str, node: BatchNode, port: int = DEFAULT_PORT, bind: str | None = None) -> None:
        super().__init__(job_id, node.num_nodes)
        self.node = node
        self.control_address = bind or main_bind_address()
        self.control_port = port
        if self.control_address == "0.0.0.0":
            self.warning = ("no cluster interface found on the main node: the coordinator listens on every "
                            "interface (set MNP_BIND_ADDRESS to the address children dial)")

    def join_hint(self, node: int) -> str | None:
        return (f"its container has not dialled {self.control_address}:{self.control_port}: not started by Batch "
                "yet, or the port is blocked, or its MNP_JOB_SECRET differs")

    def keys(self) -> Any:
        from mnp.control.channel import keys_from_secret

        return keys_from_secret(self.node.secret, self.num_nodes)

    def create(self, shm_bytes: int | None, progress: Callable[[int, int], None] | None = None) -> list[NodeInfo]:
        self.nodes = [NodeInfo(i, f"node{i}", "") for i in range(self.num_nodes)]
        return self.nodes

    def agent_argv(self, node: int) -> list[str]:
        return agent_command()

    def start_agents(self, handoffs: dict[int, dict[str, Any]]) -> None:
        """Only this node's own agent starts here; it dials the coordinator at the main node's own address."""
        mine = handoffs[self.node.main]
        super().start_agents({self.node.main: {**mine, "endpoint": mine["endpoint"].replace("0.0.0.0", "127.0.0.1")}})

    def joined(self, hellos: dict[int, dict[str, Any]]) -> list[NodeInfo]:
        # Children report the address they reached us at: that is the main node's address for everyone.
        main_addr = next((h["dialed"] for i, h in hellos.items() if i != self.node.main and h.get("dialed")),
                         hellos[self.node.main].get("address") or "127.0.0.1")
        self.nodes = [NodeInfo(i, h.get("hostname", f"node{i}"),
                               main_addr if i == self.node.main else (h.get("address") or ""))
                      for i, h in sorted(hellos.items())]
        return self.nodes

    def teardown(self) -> None:
        for p in self._agents.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main_bind_address(environ: Mapping[str, str] | None = None) -> str:
    """Where the main node's coordinator listens: ``MNP_BIND_ADDRESS``, else the node's cluster interface (its
    first usable, non-link-local IPv4 address), never every interface while one can be found."""
    env = os.environ if environ is None else environ
    if env.get("MNP_BIND_ADDRESS"):
        return env["MNP_BIND_ADDRESS"]
    from mnp.errors import HostError
    from mnp.fabric.ifaces import local_ifaces, usable

    try:
        found = [i for i in usable(local_ifaces()) if not i.link_local and not i.address.startswith("127.")]
    except HostError:
        found = []
    return found[0].address if found else "0.0.0.0"


def run_child(node: BatchNode, port: int, join_timeout: float, dead_after: float, heartbeat: float = 1.0,
              command: list[str] | None = None) -> int:
    """A child container: run the agent, dialling the main node; returns the agent's exit status."""
    from mnp.control.channel import keys_from_secret
    from mnp.node.agent import Agent

    keys = keys_from_secret(node.secret, node.num_nodes)
    handoff = {**keys.agent_handoff(node.index), "endpoint": f"tcp://{node.main_address}:{port}",
               "node": node.index, "heartbeat_s": heartbeat, "dead_s": dead_after,
               "first_contact_s": join_timeout, "dialed": node.main_address, "command": command,
               "report_ifaces": True, "shm_private": True}
    sys.stderr.write(f"mnp node {node.index}: child of job {node.job_id}; dialling main node {node.main} at "
                     f"{node.main_address}:{port}\n")
    return Agent(handoff).run()

