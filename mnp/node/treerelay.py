"""An agent that relays for its subtree of the control tree (:mod:`mnp.control.tree`).

It binds a ROUTER of its own (CURVE server with its node's key pair, which the coordinator gave its children as
their server's key) and admits exactly its children's public keys, through a ZAP handler answered in the agent's
own loop (no thread). Up, it forwards each child's frames with their origin, after checking that the origins lie
in that child's subtree; it merges its subtree's PMI barrier entries into one (all the puts, every origin) and
its subtree's heartbeats into one per interval. Down, it delivers what is for its own node and sends the rest on,
once per child whose subtree holds a target.

The frames follow :mod:`mnp.control.channel`: ``[message, data?]`` from and to the node itself,
``[b"", pack(nodes) | ALL, message, data?]`` for others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import zmq

from mnp.control import tree as t
from mnp.control import zap
from mnp.control.messages import Barrier, decode_to_coordinator, encode

__all__ = ["TreeRelay"]

_BYE = b'{"t":"bye"'
_TELEMETRY = b'{"t":"telemetry"'
_BATCH = 256  # frames handled per call, at most
_MAX_REPORTS = 20  # refusals said per relay; the rest only counted


class TreeRelay:
    """``send_up(frames)`` writes to the parent; ``report(line)`` says what was refused (logged by the agent)."""

    def __init__(self, ctx: zmq.Context[Any], tree: t.Tree, node: int, public: str, secret: str,
                 children: dict[int, str], bind_host: str, send_up: Callable[[list[bytes]], None],
                 report: Callable[[str], None], port: int | None = None) -> None:
        self.tree, self.node = tree, node
        self.send_up, self._report = send_up, report
        self.refused = 0
        self.child_of_key = {k.encode(): c for c, k in children.items() if c in tree.children(node)}
        self.mine = set(tree.subtree(node))
        self.routes: dict[int, bytes] = {}
        self.zap = ctx.socket(zmq.REP)
        self.zap.linger = 0
        self.zap.bind(zap.ENDPOINT)
        s = ctx.socket(zmq.ROUTER)
        s.curve_server = True
        s.curve_publickey = public.encode()
        s.curve_secretkey = secret.encode()
        s.zap_domain = b"mnp"
        s.router_mandatory = True
        s.sndhwm = 0  # never drop what goes down (stdin, the barrier's key-value space)
        s.linger = 1000
        if port:  # chosen by the coordinator, so the children could start with this relay (a node's own address)
            s.bind(f"tcp://{bind_host}:{port}")
        else:
            port = s.bind_to_random_port(f"tcp://{bind_host}")
        self.sock = s
        self.endpoint = f"tcp://{bind_host}:{port}"
        self.barrier_puts: dict[int, dict[str, str]] = {}  # this round's entries so far, by node
        self.heard: set[int] = set()
        self.samples: dict[int, bytes] = {}  # each node's newest telemetry sample, until the next beat
        self.gone: set[int] = {node}  # nodes of the subtree that said goodbye (this one counts as gone)

    def report(self, line: str) -> None:
        self.refused += 1
        if self.refused <= _MAX_REPORTS:
            self._report(line + ("" if self.refused < _MAX_REPORTS else " (further refusals only counted)"))

    def sockets(self) -> list[zmq.Socket[Any]]:
        return [self.zap, self.sock]

    def handle(self, sock: Any) -> None:
        if sock is self.zap:
            self._answer_zap()
        else:
            self._from_children()

    # -- admission ---------------------------------------------------------------------------------------------
    def _answer_zap(self) -> None:
        """A CURVE handshake is let through when the key is one of this relay's children's (its node index the
        connection's user id)."""
        for _ in range(_BATCH):
            try:
                req = self.zap.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            answer = zap.reply(req, self._child_of)
            if answer[2] != b"200":
                self.report(f"refused a connection from a key that is not one of node {self.node}'s children")
            self.zap.send_multipart(answer)

    def _child_of(self, key: bytes) -> str | None:
        child = self.child_of_key.get(key)
        return None if child is None else str(child)

    # -- up ----------------------------------------------------------------------------------------------------
    def _from_children(self) -> None:
        for _ in range(_BATCH):  # a bounded batch: a child that floods cannot starve this node's own work
            try:
                frames = self.sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            route = frames[0].bytes
            child = int(frames[0].get("User-Id"))
            if self.routes.setdefault(child, route) != route:
                self.report(f"a second connection holding node {child}'s key was refused")
                continue
            body = [f.bytes for f in frames[1:]]
            if len(body) >= 3 and body[0] == b"":
                origins = t.unpack(body[1])
                if why := t.refusal(self.tree, child, origins, body[2]):
                    self.report(f"node {child} relayed a message {why}; dropped")
                    continue
                assert origins is not None
                self.up(origins, body[2:])
            elif body and body[0]:
                self.up([child], body)

    def up(self, origins: list[int], body: list[bytes]) -> None:
        """A message of ``origins`` (this node's own, or from below) on its way to the coordinator."""
        if body[0] == t.HEARTBEAT:
            self.heard.update(origins)
            return
        if len(body) == 1 and body[0].startswith(_TELEMETRY) and len(origins) == 1:
            self.samples[origins[0]] = body[0]  # the newest per node; sent on with the heartbeats
            return
        if len(body) == 1 and body[0].startswith(b"["):  # a child relay's samples (one or more)
            try:
                items = [msgspec.json.encode(x) for x in msgspec.json.decode(body[0], type=list[msgspec.Raw])]
            except (msgspec.DecodeError, TypeError):
                items = []
            if len(items) == len(origins):
                self.samples.update(zip(origins, items))
            return
        if b'"barrier"' in body[0] and len(body) == 1:
            msg = decode_to_coordinator(body[0])  # decoded as the coordinator will: no form slips past the count
            if isinstance(msg, Barrier):
                for origin in origins:  # a node that enters again replaces its entry (as the coordinator does)
                    self.barrier_puts[origin] = msg.puts if origin == origins[0] else {}
                if set(self.barrier_puts) >= self.mine:
                    merged: dict[str, str] = {}
                    for puts in self.barrier_puts.values():
                        merged.update(puts)
                    self.send_up([b"", t.pack(sorted(self.barrier_puts)), encode(Barrier(merged))])
                    self.barrier_puts = {}
                return
        if body[0].startswith(_BYE):
            self.gone.update(origins)
        if origins == [self.node]:
            self.send_up(body)
        else:
            self.send_up([b"", t.pack(origins), *body])

    def all_gone(self) -> bool:
        return self.gone >= self.mine

    def beat(self) -> None:
        """Once per heartbeat interval: the subtree's heartbeats (this node's own among them) as one frame."""
        if self.heard:
            self.send_up([b"", t.pack(sorted(self.heard)), t.HEARTBEAT])
            self.heard = set()
        if self.samples:  # the subtree's telemetry as one frame: a JSON list, in the origins' order
            origins = sorted(self.samples)
            self.send_up([b"", t.pack(origins), b"[" + b",".join(self.samples[o] for o in origins) + b"]"])
            self.samples = {}

    # -- down --------------------------------------------------------------------------------------------------
    def down(self, frames: list[bytes]) -> list[bytes] | None:
        """Frames from the parent: sends on what is for the subtree; returns the message for this node, if any."""
        if not frames or frames[0] != b"":
            return frames or None
        if len(frames) < 3:
            return None
        body = frames[2:]
        targets = self.mine if frames[1] == t.ALL else set(t.unpack(frames[1]) or ())
        by_child: dict[int, list[int]] = {}
        for target in targets:
            if target != self.node and (c := self.tree.toward(self.node, target)) is not None:
                by_child.setdefault(c, []).append(target)
        for child, sub in by_child.items():
            route = self.routes.get(child)
            if route is None:
                continue  # not connected (yet, or any more): the coordinator's deadlines deal with it
            if sub == [child]:
                out = body
            else:
                whole = len(sub) == len(below := self.tree.subtree(child))
                out = [b"", t.ALL if whole and set(sub) == set(below) else t.pack(sub), *body]
            try:
                self.sock.send_multipart([route, *out], flags=zmq.NOBLOCK)
            except zmq.ZMQError:
                pass  # gone: its subtree falls silent, which the coordinator sees
        return body if self.node in targets else None

    def close(self) -> None:
        self.sock.close(linger=500)
        self.zap.close()

