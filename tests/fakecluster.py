"""A fake cluster provider for tests of the coordinator's driver without root, namespaces or rank processes.

Each node's "agent" is a thread that speaks the real protocol (typed messages over the real ZeroMQ channel, with
the job's CURVE keys), says hello with this machine's facts, and on ``Start`` plays a script instead of starting
processes: each rank prints its lines and exits with its code after its delay. A node can also die mid-job (its
thread stops talking and ``lost()`` reports it), or never join. Real: the coordinator, the engine, the channel,
the records. Fake: only what would need processes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from mnp.cluster.base import Cluster, NodeInfo
from mnp.control import messages as m
from mnp.control.channel import AgentChannel
from mnp.fabric.decide import node_facts


@dataclass
class RankScript:
    lines: list[str] = field(default_factory=list)
    code: int = 0
    after: float = 0.05  # seconds after start


@dataclass
class NodeScript:
    ranks: dict[int, RankScript] = field(default_factory=dict)  # by rank; missing ranks exit 0 at once
    die_after: float | None = None  # the agent vanishes this long after start
    join: bool = True


class FakeCluster(Cluster):
    probe_ifaces = False

    def __init__(self, job_id: str, num_nodes: int, scripts: dict[int, NodeScript] | None = None,
                 cpus: int = 1) -> None:
        super().__init__(job_id, num_nodes)
        self.scripts = scripts or {}
        self.cpus = cpus
        self.threads: dict[int, threading.Thread] = {}
        self.dead: dict[int, int] = {}
        self.stop = threading.Event()
        self.received: dict[int, list[Any]] = {i: [] for i in range(num_nodes)}

    def create(self, shm_bytes: int | None, progress: Any = None) -> list[NodeInfo]:
        self.stop, self.dead, self.threads = threading.Event(), {}, {}  # a provider serves every attempt
        self.nodes = [NodeInfo(i, f"fake{i}", "127.0.0.1") for i in range(self.num_nodes)]
        return self.nodes

    def start_agents(self, handoffs: dict[int, dict[str, Any]]) -> None:
        for node, handoff in handoffs.items():
            if not self.scripts.get(node, NodeScript()).join:
                continue
            t = threading.Thread(target=self._agent, args=(node, handoff), daemon=True)
            self.threads[node] = t
            t.start()

    def _agent(self, node: int, handoff: dict[str, Any]) -> None:
        script = self.scripts.get(node, NodeScript())
        chan = AgentChannel(handoff["endpoint"], handoff)
        try:
            chan.send(m.Hello(f"fake{node}", self.cpus, 1000 + node, fabric=node_facts(False)))
            started: float | None = None
            pending: dict[int, RankScript] = {}
            while not self.stop.is_set():
                got = chan.recv_nowait()
                now = time.monotonic()
                if got is not None:
                    msg = got[0]
                    self.received[node].append(msg)
                    if isinstance(msg, m.Start):
                        started = now
                        pending = {r.rank: script.ranks.get(r.rank, RankScript()) for r in msg.ranks}
                        chan.send(m.Started({r: 2000 + r for r in pending}))
                    elif isinstance(msg, m.Kill):
                        for rank in list(pending):
                            chan.send(m.Exit(rank, 143, "SIGTERM"))
                            del pending[rank]
                    elif isinstance(msg, m.Shutdown):
                        chan.send(m.Bye(1))
                        return
                if started is not None and script.die_after is not None and now - started > script.die_after:
                    self.dead[node] = -9
                    return
                for rank, rs in list(pending.items()):
                    if started is not None and now - started >= rs.after:
                        for line in rs.lines:
                            chan.send(m.Output(rank, "stdout"), (line + "\n").encode())
                        chan.send(m.Exit(rank, rs.code))
                        del pending[rank]
                chan.send(m.Heartbeat())
                time.sleep(0.01)
        finally:
            chan.sock.linger = 0
            chan.close()

    def lost(self) -> dict[int, int]:
        return dict(self.dead)

    def teardown(self) -> None:
        self.stop.set()
        for t in self.threads.values():
            t.join(5)
