"""The control plane's shape: a k-ary tree of agents under the coordinator. Pure: no sockets, no processes.

With ``width`` k the coordinator holds at most k connections, nodes ``0 .. k-1``; node i relays for nodes
``k*(i+1) .. k*(i+1)+k-1`` (a heap numbering with the coordinator as the root), and so on down. With ``n <= k``
it is the star every job had before: every node a child of the coordinator. Slurm's ``TreeWidth`` (16) and
Flux's overlay (k-ary, 2 by default, often set to 32 or more) are the same idea.

Who sends what through it (:mod:`mnp.control.channel` for the frames, :mod:`mnp.node.relay_tree` for a relay):

- Up, a relay forwards its subtree's messages with their origin; it merges its subtree's PMI barrier entries
  into one message (the puts of all of them, the list of nodes), and its subtree's heartbeats into one per
  interval.
- Down, a message for many nodes travels once per edge: the coordinator sends it to each top node whose subtree
  holds some of the targets, with the targets (or "all of your subtree"); each relay does the same for its
  children.

A relay may speak only for its own subtree: every hop checks that the origins a child claims lie in that
child's subtree, and the coordinator that they lie in the sending top node's.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from mnp.control.messages import Heartbeat, encode

__all__ = ["Tree", "pack", "unpack", "ALL", "DEFAULT_WIDTH", "HEARTBEAT", "refusal", "TreeModel", "model"]

#: a heartbeat as a frame (relays merge them by comparing frames, without decoding)
HEARTBEAT = encode(Heartbeat())

#: the coordinator's (and each relay's) children at most, unless ``--tree-width`` says otherwise
DEFAULT_WIDTH = 32

#: the targets of a down-going message that is for every node of the receiver's subtree
ALL = b"*"


def pack(nodes: Iterable[int]) -> bytes:
    """Node indices as a frame (little-endian uint32s)."""
    nodes = list(nodes)
    return struct.pack(f"<{len(nodes)}I", *nodes)


def unpack(frame: bytes) -> list[int] | None:
    """The node indices of a frame made by :func:`pack`; None when it is not one (a malformed frame)."""
    if not frame or len(frame) % 4:
        return None
    return list(struct.unpack(f"<{len(frame) // 4}I", frame))


@dataclass(frozen=True)
class Tree:
    n: int
    width: int

    def __post_init__(self) -> None:
        if self.n < 1 or self.width < 1:
            raise ValueError(f"a tree needs nodes and a width (n={self.n}, width={self.width})")

    @property
    def star(self) -> bool:
        """Every node a child of the coordinator (nothing is relayed)."""
        return self.n <= self.width

    def parent(self, i: int) -> int | None:
        """The node ``i`` dials; None: the coordinator."""
        return None if i < self.width else i // self.width - 1

    def children(self, i: int) -> range:
        first = self.width * (i + 1)
        return range(min(first, self.n), min(first + self.width, self.n))

    def tops(self) -> range:
        """The coordinator's own children."""
        return range(min(self.width, self.n))

    def depth(self, i: int) -> int:
        """1 for a top node, 2 for its children, ..."""
        d = 1
        while (p := self.parent(i)) is not None:
            i, d = p, d + 1
        return d

    def levels(self) -> list[list[int]]:
        """Nodes by depth: ``levels()[0]`` are the tops. Node indices grow with depth."""
        out: list[list[int]] = []
        level = list(self.tops())
        while level:
            out.append(level)
            level = [c for i in level for c in self.children(i)]
        return out

    def subtree(self, i: int) -> list[int]:
        """``i`` and every node below it."""
        out, level = [i], [i]
        while level:
            level = [c for j in level for c in self.children(j)]
            out += level
        return out

    def within(self, root: int, node: int) -> bool:
        """Whether ``node`` lies in ``root``'s subtree (``root`` itself included)."""
        if not 0 <= node < self.n:
            return False
        while node > root:
            p = self.parent(node)
            if p is None:
                return False
            node = p
        return node == root

    def toward(self, i: int | None, target: int) -> int | None:
        """The child of ``i`` (or, ``i`` None, the top node) whose subtree holds ``target``; None when none does."""
        if not 0 <= target < self.n:
            return None
        node = target
        while (p := self.parent(node)) != i:
            if p is None:
                return None
            node = p
        return node


def refusal(tree: Tree, sender: int, origins: list[int] | None, message: bytes) -> str | None:
    """Why ``sender`` may not speak for ``origins`` in a frame carrying ``message`` (None: it may). Each origin
    must lie in the sender's subtree and come once; several only where relays merge: a PMI barrier entry,
    heartbeats, a list of telemetry samples. The same rule at every relay and at the coordinator."""
    if not origins:
        return "with origins that are not node indices"
    stranger = next((o for o in origins if not tree.within(sender, o)), None)
    if stranger is not None:
        return f"as node {stranger}, which is not in its subtree"
    if len(origins) > 1 and not (message == HEARTBEAT or b'"barrier"' in message or message.startswith(b"[")):
        return "for several nodes where one may speak"
    if len(set(origins)) != len(origins):
        return "for one node twice"
    return None


@dataclass(frozen=True)
class TreeModel:
    """What one job of ``n`` nodes costs the control plane, by counting (README, "Scale")."""

    n: int
    width: int
    depth: int  # levels of agents below the coordinator
    coordinator_links: int  # connections the coordinator holds
    relay_links: int  # the most any agent holds: its parent and its children
    barrier_messages: int  # frames the coordinator reads and writes for one PMI barrier
    heartbeat_messages: int  # frames the coordinator reads per heartbeat interval
    kvs_copies: int  # copies of the barrier's key-value space the coordinator sends


def model(n: int, width: int) -> TreeModel:
    t = Tree(n, width)
    tops = len(t.tops())
    widest = min(width, max(0, n - width))  # node 0's children: the first relay is always the fullest
    return TreeModel(n, width, len(t.levels()), tops, 1 + widest, 2 * tops, tops, tops)
