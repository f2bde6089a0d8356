"""The control plane's sockets: ZeroMQ with CURVE, typed messages (:mod:`mnp.control.messages`).

The coordinator binds a ROUTER (``CURVE_SERVER``, ``ROUTER_MANDATORY``); each agent connects a DEALER. Keys are
made per job by :func:`make_keys` (or derived from one shared secret by :func:`keys_from_secret` where nodes start
themselves); an agent's secret key reaches it out of band (a pipe or its stdin, never argv).

Who is who: pyzmq's authenticator (ZAP, RFC 27) admits only the job's agent public keys and names each connection
by the node its key was issued to (the ZAP user id). Every frame the coordinator receives carries that user id, so
a peer's node index comes from its key, never from anything it claims. The first connection of a node fixes its
route; a second connection with the same key (a copy of the key, not a reconnect: an agent keeps its routing
identity across reconnects) is refused and reported.

In a tree (:mod:`mnp.control.tree`) only the top nodes dial the coordinator; each relays for its subtree. A frame
that a relay forwards starts with an empty frame, then the origins (or, going down, the targets), then the
message: ``[b"", pack(nodes), message, data?]``. A message never encodes to an empty frame, so the two forms
cannot be mistaken for each other. The origins a top node claims must lie in its own subtree.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
import zmq
from zmq.utils import z85

from mnp.control import messages as m
from mnp.control import tree as t
from mnp.control.messages import InvalidMessage, ToAgent, ToCoordinator, decode_to_agent, decode_to_coordinator, encode
from mnp.control.zap import ZapThread
from mnp.errors import UsageError

__all__ = ["JobKeys", "make_keys", "keys_from_secret", "CoordinatorChannel", "AgentChannel", "Received"]

_SAMPLES = msgspec.json.Decoder(list[m.Telemetry])  # relays send their subtree's samples as one list


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

    def __init__(self, keys: JobKeys, admit: Iterable[int] | None = None) -> None:
        chosen = set(admit) if admit is not None else None
        self.node_of = {pub: i for i, (pub, _) in keys.agents.items() if chosen is None or i in chosen}



def _authenticator(ctx: zmq.Context[Any], nodes: _NodeKeys) -> ZapThread:
    """The ZAP handler: the user id of a connection is its node index (its key's), and no other key gets in."""
    def user_of(key: bytes) -> str | None:
        node = nodes.node_of.get(key)
        return None if node is None else str(node)

    return ZapThread(ctx, user_of)


@dataclass(frozen=True)
class Received:
    """One message as the coordinator got it: the node is the one its CURVE key belongs to."""

    node: int
    msg: ToCoordinator | InvalidMessage
    data: bytes | None = None


class CoordinatorChannel:
    """The coordinator's end: one ROUTER socket that all agents dial."""

    def __init__(self, keys: JobKeys, bind_address: str, port: int = 0, tree: t.Tree | None = None) -> None:
        self.tree = tree if tree is not None and not tree.star else None
        self.ctx = zmq.Context()
        # in a tree only the top nodes dial here: any other node's key is refused at the handshake
        self._auth = _authenticator(self.ctx, _NodeKeys(keys, self.tree.tops() if self.tree else None))
        s = self.ctx.socket(zmq.ROUTER)
        s.curve_server = True
        s.curve_secretkey = keys.server_secret
        s.curve_publickey = keys.server_public
        s.router_mandatory = True
        s.linger = 1000
        try:
            if port:
                s.bind(f"tcp://{bind_address}:{port}")
            else:
                port = s.bind_to_random_port(f"tcp://{bind_address}")
        except zmq.ZMQError as e:  # an address this host does not have (MNP_BIND_ADDRESS), a port taken
            s.close(0)
            self._auth.stop()
            self.ctx.term()
            where = "MNP_BIND_ADDRESS: " if os.environ.get("MNP_BIND_ADDRESS") == bind_address else ""
            raise UsageError(f"{where}the coordinator cannot listen on {bind_address}"
                             f"{f':{port}' if port else ''}: {e.strerror}") from None
        self.sock = s
        self.endpoint = f"tcp://{bind_address}:{port}"
        self.routes: dict[int, bytes] = {}  # node -> its connection's routing identity
        self.refused: list[str] = []  # one line per frame refused here (the coordinator reports and records them)
        self._ready: deque[Received] = deque()  # the rest of a frame that spoke for several nodes
        self.frames_in = self.frames_out = 0  # messages read and written here (the job's record keeps them)

    def send(self, node: int, msg: ToAgent, data: bytes | None = None) -> bool:
        """Send to one agent; False when it (or, in a tree, the top node above it) has not connected or is gone
        (ROUTER_MANDATORY says so)."""
        return self.send_many([node], msg, data)

    def send_many(self, nodes: Iterable[int], msg: ToAgent, data: bytes | None = None) -> bool:
        """One message for several agents: encoded once, and in a tree sent once per top node, which relays it
        down (each edge carries it once). False when some could not be sent."""
        body = [encode(msg)] + ([data] if data is not None else [])
        if self.tree is None:
            return all([self._send(node, body) for node in nodes])
        by_top: dict[int, list[int]] = {}
        for node in nodes:
            top = self.tree.toward(None, node)
            if top is None:
                return False
            by_top.setdefault(top, []).append(node)
        ok = True
        for top, targets in by_top.items():
            if targets == [top]:
                ok &= self._send(top, body)
            else:
                whole = len(targets) == len(sub := self.tree.subtree(top)) and set(targets) == set(sub)
                ok &= self._send(top, [b"", t.ALL if whole else t.pack(targets), *body])
        return ok

    def _send(self, node: int, frames: list[bytes]) -> bool:
        route = self.routes.get(node)
        if route is None:
            return False
        try:
            self.sock.send_multipart([route, *frames], flags=zmq.NOBLOCK)
            self.frames_out += 1
            return True
        except zmq.ZMQError:
            return False

    @property
    def pending(self) -> bool:
        """Messages already read (a relayed frame spoke for several nodes): the caller should not wait."""
        return bool(self._ready)

    def recv(self, timeout_ms: int) -> Received | None:
        """The next message, or None after ``timeout_ms``. Frames that are not a message an agent may send come
        back as :class:`InvalidMessage`; a second connection holding a node's key is dropped here."""
        if self._ready:
            return self._ready.popleft()
        if not self.sock.poll(timeout_ms):
            return None
        frames = self.sock.recv_multipart(copy=False)
        self.frames_in += 1
        route = frames[0].bytes
        node = int(frames[0].get("User-Id"))
        known = self.routes.setdefault(node, route)
        if known != route:
            self.refused.append(f"a second connection holding node {node}'s key was refused")
            return None
        body = [f.bytes for f in frames[1:]]
        if len(body) >= 2 and body[0] == b"":
            return self._relayed(node, body[1], body[2:])
        if not body:
            return Received(node, InvalidMessage("empty message"))
        return Received(node, decode_to_coordinator(body[0]), body[1] if len(body) > 1 else None)

    def _samples(self, top: int, origins: list[int], frame: bytes) -> Received | None:
        """A relay's telemetry: one sample per origin, in order (each a Telemetry message, checked as such)."""
        try:
            samples = _SAMPLES.decode(frame) if len(frame) <= m.MAX_FRAME else None
        except msgspec.DecodeError:
            samples = None
        if samples is None or len(samples) != len(origins):
            self.refused.append(f"node {top} relayed telemetry that does not match its origins; dropped")
            return None
        self._ready.extend(Received(o, sample) for o, sample in zip(origins, samples))
        return self._ready.popleft()

    def _relayed(self, top: int, origins_frame: bytes, body: list[bytes]) -> Received | None:
        """A frame a top node forwarded for nodes of its subtree: one :class:`Received` per origin. A PMI
        barrier entry merged by the relays holds every origin's puts; the engine gets them with the first."""
        origins = t.unpack(origins_frame)
        if self.tree is None or not body:
            self.refused.append(f"node {top} sent a relayed frame that is not one; dropped")
            return None
        if why := t.refusal(self.tree, top, origins, body[0]):
            self.refused.append(f"node {top} relayed a message {why}; dropped")
            return None
        assert origins is not None
        if body[0].startswith(b"["):  # (a relay sends its samples as a list, also when only one node's came)
            return self._samples(top, origins, body[0])
        msg = decode_to_coordinator(body[0])
        data = body[1] if len(body) > 1 else None
        if len(origins) > 1 and not isinstance(msg, (m.Barrier, m.Heartbeat)):
            self.refused.append(f"node {top} relayed one message for several nodes; dropped")
            return None
        for i, origin in enumerate(origins):
            one = m.Barrier({}) if i and isinstance(msg, m.Barrier) else msg
            self._ready.append(Received(origin, one, data))
        return self._ready.popleft() if self._ready else None

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

    def send_frames(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def recv_frames_nowait(self) -> list[bytes] | None:
        try:
            return self.sock.recv_multipart(flags=zmq.NOBLOCK)
        except zmq.Again:
            return None

    def recv_nowait(self) -> tuple[ToAgent | InvalidMessage, bytes | None] | None:
        """The next message for this node (a relay reads frames with :meth:`recv_frames_nowait` instead)."""
        while (frames := self.recv_frames_nowait()) is not None:
            if frames and frames[0] == b"":  # relayed down to us: the targets must be us
                if len(frames) < 3:
                    continue
                frames = frames[2:]
            return decode_to_agent(frames[0]), (frames[1] if len(frames) > 1 else None)
        return None

    def close(self, linger: int | None = None) -> None:
        """``linger``: milliseconds to keep trying to deliver what is queued (None: the socket's 2 s)."""
        self.sock.close(linger)
        self.ctx.term()
