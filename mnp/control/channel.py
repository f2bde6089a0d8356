"""The control plane's sockets: ZeroMQ with CURVE, typed messages (:mod:`mnp.control.messages`).

The coordinator binds a ROUTER (``CURVE_SERVER``, ``ROUTER_MANDATORY``); each agent connects a DEALER. Keys are
made per job by :func:`make_keys` (or derived from one shared secret by :func:`keys_from_secret` where nodes start
themselves); an agent's secret key reaches it out of band (a pipe or its stdin, never argv).

Who is who: pyzmq's authenticator (ZAP, RFC 27) admits only the job's agent public keys and names each connection
by the node its key was issued to (the ZAP user id). Every frame the coordinator receives carries that user id, so
a peer's node index comes from its key, never from anything it claims. The first connection of a node fixes its
route; a second connection with the same key (a copy of the key, not a reconnect: an agent keeps its routing
identity across reconnects) is refused and reported.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.utils import z85

from mnp.control.messages import InvalidMessage, ToAgent, ToCoordinator, decode_to_agent, decode_to_coordinator, encode

__all__ = ["JobKeys", "make_keys", "keys_from_secret", "CoordinatorChannel", "AgentChannel", "Received"]


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
    sec = z85.encode(hashlib.sha256(f"mnp/{label}\0{secret}".encode()).digest())
    return zmq.curve_public(sec), sec


def keys_from_secret(secret: str, nodes: int) -> JobKeys:
    """The same job keys on every node, from one shared secret (for nodes that start themselves: AWS Batch)."""
    spub, ssec = _derived(secret, "server")
    return JobKeys(spub, ssec, {i: _derived(secret, f"agent/{i}") for i in range(nodes)})


class _NodeKeys:
    """The ZAP credentials provider: a key is admitted when the job issued it to a node."""

    def __init__(self, keys: JobKeys) -> None:
        self.node_of = {pub: i for i, (pub, _) in keys.agents.items()}

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.node_of


def _authenticator(ctx: zmq.Context[Any], nodes: _NodeKeys) -> Any:
    """pyzmq's ZAP thread, with the user id of a connection set to its node index. Imported here: it brings
    asyncio, which no agent needs (agents start on every node, and their start-up is launch time)."""
    from zmq.auth.thread import ThreadAuthenticator

    class Authenticator(ThreadAuthenticator):
        def curve_user_id(self, client_public_key: bytes) -> str:
            return str(nodes.node_of[z85.encode(client_public_key)])

    auth = Authenticator(ctx)
    auth.start()
    auth.configure_curve_callback("*", nodes)
    return auth


@dataclass(frozen=True)
class Received:
    """One message as the coordinator got it: the node is the one its CURVE key belongs to."""

    node: int
    msg: ToCoordinator | InvalidMessage
    data: bytes | None = None


class CoordinatorChannel:
    """The coordinator's end: one ROUTER socket that all agents dial."""

    def __init__(self, keys: JobKeys, bind_address: str, port: int = 0) -> None:
        self.ctx = zmq.Context()
        self._auth = _authenticator(self.ctx, _NodeKeys(keys))
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
        self.routes: dict[int, bytes] = {}  # node -> its connection's routing identity
        self.refused: list[str] = []  # one line per frame refused here (the coordinator reports and records them)

    def send(self, node: int, msg: ToAgent, data: bytes | None = None) -> bool:
        """Send to one agent; False when it has not connected (or is gone: ROUTER_MANDATORY says so)."""
        route = self.routes.get(node)
        if route is None:
            return False
        frames = [route, encode(msg)]
        if data is not None:
            frames.append(data)
        try:
            self.sock.send_multipart(frames, flags=zmq.NOBLOCK)
            return True
        except zmq.ZMQError:
            return False

    def recv(self, timeout_ms: int) -> Received | None:
        """The next message, or None after ``timeout_ms``. Frames that are not a message an agent may send come
        back as :class:`InvalidMessage`; a second connection holding a node's key is dropped here."""
        if not self.sock.poll(timeout_ms):
            return None
        frames = self.sock.recv_multipart(copy=False)
        route = frames[0].bytes
        node = int(frames[0].get("User-Id"))
        known = self.routes.setdefault(node, route)
        if known != route:
            self.refused.append(f"a second connection holding node {node}'s key was refused")
            return None
        if len(frames) < 2:
            return Received(node, InvalidMessage("empty message"))
        data = frames[2].bytes if len(frames) > 2 else None
        return Received(node, decode_to_coordinator(frames[1].bytes), data)

    def close(self) -> None:
        self.sock.close(linger=200)
        self._auth.stop()
        self.ctx.term()


class AgentChannel:
    """An agent's end: a DEALER, CURVE client of the coordinator, with a routing identity of its own that stays
    the same across reconnects."""

    def __init__(self, endpoint: str, handoff: dict[str, str]) -> None:
        self.ctx = zmq.Context(io_threads=1)
        s = self.ctx.socket(zmq.DEALER)
        s.identity = b"a" + os.urandom(15)
        s.curve_serverkey = handoff["server_public"].encode()
        s.curve_publickey = handoff["public"].encode()
        s.curve_secretkey = handoff["secret"].encode()
        s.linger = 2000
        s.sndhwm = 0  # never drop rank output
        s.reconnect_ivl = 100  # dial again with exponential backoff up to 5 s while the coordinator is not up
        s.reconnect_ivl_max = 5000
        s.connect(endpoint)
        self.sock = s

    def send(self, msg: ToCoordinator, data: bytes | None = None) -> None:
        frames = [encode(msg)]
        if data is not None:
            frames.append(data)
        self.sock.send_multipart(frames)

    def recv_nowait(self) -> tuple[ToAgent | InvalidMessage, bytes | None] | None:
        try:
            frames = self.sock.recv_multipart(flags=zmq.NOBLOCK)
        except zmq.Again:
            return None
        return decode_to_agent(frames[0]), (frames[1] if len(frames) > 1 else None)

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()
