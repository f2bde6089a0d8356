"""The control plane between the coordinator and the node agents: ZeroMQ with CURVE.

The coordinator binds a ROUTER (``CURVE_SERVER``, ``ROUTER_MANDATORY``); each agent connects a DEALER whose
identity is its node index. Keys are made per job by :func:`make_keys`; an agent's secret key reaches it out of
band (its stdin, never argv). A ZAP handler admits only the job's agent public keys.

Every message is a JSON header frame, optionally followed by one raw bytes frame (rank output). The message kinds,
both directions, are listed in :data:`TO_AGENT` and :data:`TO_COORDINATOR`; the names match on both sides.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.utils import z85

__all__ = ["JobKeys", "make_keys", "keys_from_secret", "CoordinatorChannel", "AgentChannel", "TO_AGENT", "TO_COORDINATOR"]

TO_AGENT = ("start", "barrier_done", "kill", "ping", "shutdown", "exec", "exec_kill", "rexec_output", "rexec_exit",
            "remount_shm")
TO_COORDINATOR = ("hello", "started", "output", "exit", "barrier", "abort", "heartbeat", "bye",
                  "exec_output", "exec_exit", "rexec", "rexec_kill", "shm_remounted")


@dataclass(frozen=True)
class JobKeys:
    server_public: bytes
    server_secret: bytes
    agents: dict[int, tuple[bytes, bytes]]  # node -> (public, secret)

    def agent_handoff(self, node: int) -> dict[str, str]:
        """What one agent needs to join: its keypair and the server's public key (Z85 text)."""
        pub, sec = self.agents[node]
        return {"server_public": self.server_public.decode(), "public": pub.decode(), "secret": sec.decode()}


def make_keys(nodes: int) -> JobKeys:
    spub, ssec = zmq.curve_keypair()
    return JobKeys(spub, ssec, {i: zmq.curve_keypair() for i in range(nodes)})


def _derived(secret: str, label: str) -> tuple[bytes, bytes]:
    import hashlib

    sec = z85.encode(hashlib.sha256(f"mnp/{label}\0{secret}".encode()).digest())
    return zmq.curve_public(sec), sec


def keys_from_secret(secret: str, nodes: int) -> JobKeys:
    """The same job keys on every node, from one shared secret (for nodes that start themselves: AWS Batch)."""
    spub, ssec = _derived(secret, "server")
    return JobKeys(spub, ssec, {i: _derived(secret, f"agent/{i}") for i in range(nodes)})


def _encode(kind: str, body: dict[str, Any]) -> bytes:
    return json.dumps({"t": kind, **body}, separators=(",", ":")).encode()


class _Zap(threading.Thread):
    """A minimal ZAP handler (RFC 27) that admits the job's agent keys only."""

    def __init__(self, ctx: zmq.Context, allowed: set[bytes]) -> None:
        super().__init__(name="mnp-zap", daemon=True)
        self.allowed = allowed
        self.sock = ctx.socket(zmq.REP)
        self.sock.linger = 0
        self.sock.bind("inproc://zeromq.zap.01")

    def run(self) -> None:
        try:
            while True:
                frames = self.sock.recv_multipart()
                version, request_id, _domain, _addr, _identity, mechanism = frames[:6]
                creds = frames[6:]
                ok = mechanism == b"CURVE" and bool(creds) and z85.encode(creds[0]) in self.allowed
                self.sock.send_multipart([version, request_id, b"200" if ok else b"400",
                                          b"OK" if ok else b"unknown key", b"", b""])
        except zmq.ContextTerminated:
            pass
        finally:
            self.sock.close(0)


class CoordinatorChannel:
    """The coordinator's end: one ROUTER socket that all agents dial."""

    def __init__(self, keys: JobKeys, bind_address: str, port: int = 0) -> None:
        self.ctx = zmq.Context()
        self._zap = _Zap(self.ctx, {pub for pub, _ in keys.agents.values()})
        self._zap.start()
        s = self.ctx.socket(zmq.ROUTER)
        s.curve_server = True
        s.curve_secretkey = keys.server_secret
        s.curve_publickey = keys.server_public
        s.router_mandatory = True
        s.linger = 1000
        if port:
            s.bind(f"tcp://{bind_address}:{port}")
        else:
            port = s.bind_to_random_port(f"tcp://{bind_address}")
        self.sock = s
        self.endpoint = f"tcp://{bind_address}:{port}"

    def send(self, node: int, kind: str, data: bytes | None = None, **body: Any) -> bool:
        """Send to one agent; False when it is not connected (ROUTER_MANDATORY)."""
        frames = [str(node).encode(), _encode(kind, body)]
        if data is not None:
            frames.append(data)
        try:
            self.sock.send_multipart(frames, flags=zmq.NOBLOCK)
            return True
        except zmq.ZMQError:
            return False

    def recv(self, timeout_ms: int) -> tuple[int, dict[str, Any], bytes | None] | None:
        if not self.sock.poll(timeout_ms):
            return None
        frames = self.sock.recv_multipart()
        node = int(frames[0])
        msg = json.loads(frames[1])
        return node, msg, (frames[2] if len(frames) > 2 else None)

    def close(self) -> None:
        self.sock.close(linger=200)
        self.ctx.term()
        self._zap.join(timeout=2)


class AgentChannel:
    """An agent's end: a DEALER with identity = node index, CURVE client of the coordinator."""

    def __init__(self, endpoint: str, node: int, handoff: dict[str, str]) -> None:
        self.ctx = zmq.Context(io_threads=1)
        s = self.ctx.socket(zmq.DEALER)
        s.identity = str(node).encode()
        s.curve_serverkey = handoff["server_public"].encode()
        s.curve_publickey = handoff["public"].encode()
        s.curve_secretkey = handoff["secret"].encode()
        s.linger = 2000
        s.sndhwm = 0  # never drop rank output
        s.reconnect_ivl = 100  # dial again with exponential backoff up to 5 s while the coordinator is not up
        s.reconnect_ivl_max = 5000
        s.connect(endpoint)
        self.sock = s

    def send(self, kind: str, data: bytes | None = None, **body: Any) -> None:
        frames = [_encode(kind, body)]
        if data is not None:
            frames.append(data)
        self.sock.send_multipart(frames)

    def recv_nowait(self) -> tuple[dict[str, Any], bytes | None] | None:
        try:
            frames = self.sock.recv_multipart(flags=zmq.NOBLOCK)
        except zmq.Again:
            return None
        return json.loads(frames[0]), (frames[1] if len(frames) > 1 else None)

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()
