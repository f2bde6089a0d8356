"""The control tree's shape (pure) and its frames through real ZeroMQ sockets: a coordinator channel, a relay
with its ZAP handler, and agent channels, all CURVE, on loopback. No root."""

from __future__ import annotations

import time
from typing import Any

import pytest
import zmq

from mnp.control import messages as m
from mnp.control import tree as t
from mnp.control.channel import AgentChannel, CoordinatorChannel, Received, make_keys
from mnp.node.treerelay import TreeRelay

pytestmark = pytest.mark.noroot


@pytest.mark.parametrize("n,width", [(1, 1), (5, 2), (7, 2), (40, 3), (128, 32), (1000, 16), (33, 32)])
def test_every_node_has_one_path_to_the_coordinator(n: int, width: int) -> None:
    tree = t.Tree(n, width)
    levels = tree.levels()
    assert sorted(i for level in levels for i in level) == list(range(n))  # each node exactly once
    assert len(tree.tops()) == min(n, width)
    for i in range(n):
        p = tree.parent(i)
        assert (p is None) == (i in tree.tops())
        if p is not None:
            assert i in tree.children(p) and p < i and tree.depth(i) == tree.depth(p) + 1
        assert len(tree.children(i)) <= width
        assert tree.toward(None, i) in tree.tops() and tree.within(tree.toward(None, i), i)
    # the subtrees of the top nodes partition the nodes; within() agrees with subtree() everywhere
    assert sorted(i for top in tree.tops() for i in tree.subtree(top)) == list(range(n))
    for root in range(0, n, max(1, n // 7)):
        below = set(tree.subtree(root))
        assert {i for i in range(n) if tree.within(root, i)} == below
        for target in below - {root}:
            c = tree.toward(root, target)
            assert c in tree.children(root) and tree.within(c, target)
        assert all(tree.toward(root, x) is None for x in set(range(n)) - below)


def test_star_below_the_width_and_depth_grows_as_log_width() -> None:
    assert t.Tree(32, 32).star and not t.Tree(33, 32).star
    assert len(t.Tree(10_000, 32).levels()) == 3  # 32 + 1,024 + the other 8,944
    assert len(t.Tree(10_000, 16).levels()) == 4
    assert t.Tree(7, 2).levels() == [[0, 1], [2, 3, 4, 5], [6]]
    with pytest.raises(ValueError):
        t.Tree(4, 0)


def test_model_counts_what_the_coordinator_handles() -> None:
    star, tree = t.model(10_000, 10_000), t.model(10_000, 32)
    assert (star.coordinator_links, star.barrier_messages, star.kvs_copies) == (10_000, 20_000, 10_000)
    assert (tree.depth, tree.coordinator_links, tree.relay_links) == (3, 32, 33)
    assert (tree.barrier_messages, tree.heartbeat_messages, tree.kvs_copies) == (64, 32, 32)


def test_pack_round_trips_and_rejects_what_is_not_node_indices() -> None:
    assert t.unpack(t.pack([0, 5, 70_000])) == [0, 5, 70_000]
    assert t.unpack(b"") is None and t.unpack(b"abc") is None


# -- real sockets -------------------------------------------------------------------------------------------------
class Net:
    """Tree(5, 2): nodes 0 and 1 dial the coordinator; node 0 relays for 2 and 3, node 1 for 4."""

    def __init__(self) -> None:
        self.tree = t.Tree(5, 2)
        self.keys = make_keys(5)
        self.coord = CoordinatorChannel(self.keys, "127.0.0.1", tree=self.tree)
        self.reports: list[str] = []
        self.agents: dict[int, AgentChannel] = {}
        self.relays: dict[int, TreeRelay] = {}
        for node in (0, 1):
            self.agents[node] = AgentChannel(self.coord.endpoint, self.keys.agent_handoff(node))
            pub, sec = (k.decode() for k in self.keys.agents[node])
            kids = {c: self.keys.agents[c][0].decode() for c in self.tree.children(node)}
            self.relays[node] = TreeRelay(self.agents[node].ctx, self.tree, node, pub, sec, kids, "127.0.0.1",
                                          self.agents[node].send_frames, self.reports.append)
        for node in (2, 3, 4):
            parent = self.tree.parent(node)
            assert parent is not None
            self.agents[node] = self.child(node, parent)

    def child(self, node: int, parent: int, handoff: dict[str, str] | None = None) -> AgentChannel:
        h = handoff or {**self.keys.agent_handoff(node), "server_public": self.keys.agents[parent][0].decode()}
        return AgentChannel(self.relays[parent].endpoint, h)

    def pump(self, seconds: float = 0.3) -> None:
        """Let the relays move frames both ways for a while (what the agent's loop does)."""
        end = time.monotonic() + seconds
        poller = zmq.Poller()
        for r in self.relays.values():
            for s in r.sockets():
                poller.register(s, zmq.POLLIN)
        while time.monotonic() < end:
            for sock, _ in poller.poll(20):
                for r in self.relays.values():
                    if sock in r.sockets():
                        r.handle(sock)
            self.down()

    def down(self) -> None:
        self.inbox: dict[int, list[Any]] = getattr(self, "inbox", {})
        for node, relay in self.relays.items():
            while (frames := self.agents[node].recv_frames_nowait()) is not None:
                if (mine := relay.down(frames)) is not None:
                    self.inbox.setdefault(node, []).append(m.decode_to_agent(mine[0]))

    def received(self, seconds: float = 1.0, enough: int | None = None) -> list[Received]:
        """What the coordinator gets within ``seconds`` (or as soon as ``enough`` messages came)."""
        out: list[Received] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end and (enough is None or len(out) < enough):
            self.pump(0.02)
            while (got := self.coord.recv(5)) is not None:
                out.append(got)
        return out

    def leaf_inbox(self, node: int, wait: float = 0.3) -> list[Any]:
        out = []
        self.agents[node].sock.poll(int(wait * 1000))
        while (got := self.agents[node].recv_nowait()) is not None:
            out.append(got[0])
        return out

    def close(self) -> None:
        for r in self.relays.values():
            r.close()
        for a in self.agents.values():
            a.close()
        self.coord.close()


@pytest.fixture
def net() -> Any:
    n = Net()
    yield n
    n.close()


def _join(net: Net) -> None:
    """Every node says hello (leaves through their relay) and the coordinator learns each as itself."""
    for node in (2, 3, 4):
        net.agents[node].send(m.Hello(f"n{node}", 1, node))
    for node in (0, 1):
        net.relays[node].up([node], [m.encode(m.Hello(f"n{node}", 1, node))])
    got = net.received(5.0, enough=5)
    assert sorted((r.node, r.msg.hostname) for r in got if isinstance(r.msg, m.Hello)) == \
        [(i, f"n{i}") for i in range(5)]


def test_messages_from_below_arrive_as_their_own_node(net: Net) -> None:
    _join(net)
    net.agents[3].send(m.Output(3, "stdout"), b"from three\n")
    got = [r for r in net.received(3.0, enough=1) if isinstance(r.msg, m.Output)]
    assert [(r.node, r.data) for r in got] == [(3, b"from three\n")]
    assert net.coord.refused == [] and net.reports == []


def test_a_barrier_goes_up_once_per_relay_with_every_put(net: Net) -> None:
    _join(net)
    for node in (2, 3, 4):
        net.agents[node].send(m.Barrier({f"card{node}": str(node)}))
    net.pump(0.3)
    assert net.coord.recv(50) is None  # the relays wait for their own node's entry
    for node in (0, 1):
        net.relays[node].up([node], [m.encode(m.Barrier({f"card{node}": str(node)}))])
    got = [r for r in net.received(3.0, enough=5) if isinstance(r.msg, m.Barrier)]
    assert sorted(r.node for r in got) == [0, 1, 2, 3, 4]
    merged: dict[str, str] = {}
    for r in got:
        merged.update(r.msg.puts)
    assert merged == {f"card{i}": str(i) for i in range(5)}
    assert sum(1 for r in got if r.msg.puts) == 2  # two frames reached the coordinator, one per top node


def test_a_broadcast_is_sent_once_per_top_and_reaches_every_node(net: Net) -> None:
    _join(net)
    done = m.BarrierDone({"k": "v"})
    assert net.coord.send_many(range(5), done)
    net.pump(0.5)
    assert net.inbox[0] == [done] and net.inbox[1] == [done]
    for leaf in (2, 3, 4):
        assert net.leaf_inbox(leaf) == [done]
    assert net.coord.send(3, m.Ping())  # one node below a relay: only it gets it
    net.pump(0.3)
    assert net.leaf_inbox(3) == [m.Ping()] and net.leaf_inbox(2, 0.1) == [] and net.inbox[0] == [done]


def test_heartbeats_of_a_subtree_are_one_frame_per_interval(net: Net) -> None:
    _join(net)
    for node in (2, 3):
        net.agents[node].send(m.Heartbeat())
    net.relays[0].up([0], [m.encode(m.Heartbeat())])
    net.pump(0.3)
    assert net.coord.recv(50) is None  # held until the relay's beat
    net.relays[0].beat()
    got = net.received(3.0, enough=3)
    assert sorted(r.node for r in got if isinstance(r.msg, m.Heartbeat)) == [0, 2, 3]


def test_a_child_cannot_speak_for_a_node_outside_its_subtree(net: Net) -> None:
    _join(net)
    net.agents[2].send_frames([b"", t.pack([4]), m.encode(m.Exit(4, 0))])  # node 2 claims to be node 4
    net.agents[2].send_frames([b"", b"xyz", m.encode(m.Exit(2, 0))])  # not node indices
    assert not [r for r in net.received(0.6) if isinstance(r.msg, m.Exit)]
    assert net.reports == ["node 2 relayed a message as node 4, which is not in its subtree; dropped",
                           "node 2 relayed a message with origins that are not node indices; dropped"]


def test_a_top_node_cannot_speak_for_another_tops_subtree(net: Net) -> None:
    _join(net)
    net.agents[1].send_frames([b"", t.pack([3]), m.encode(m.Exit(3, 0))])  # node 3 is below node 0, not 1
    assert not [r for r in net.received(0.5) if isinstance(r.msg, m.Exit)]
    assert net.coord.refused == ["node 1 relayed a message as node 3, which is not in its subtree; dropped"]


def test_only_top_nodes_may_dial_the_coordinator_and_only_children_a_relay(net: Net) -> None:
    _join(net)
    direct = AgentChannel(net.coord.endpoint, net.keys.agent_handoff(3))  # node 3's real key, the wrong door
    direct.send(m.Exit(3, 7))
    wrong_child = net.child(4, 0)  # node 4 is node 1's child, not node 0's
    wrong_child.send(m.Exit(4, 7))
    try:
        assert not [r for r in net.received(0.8) if isinstance(r.msg, m.Exit)]
        assert any("not one of node 0's children" in line for line in net.reports)
    finally:
        for refused in (direct, wrong_child):
            refused.sock.linger = 0  # their frames can never be delivered
            refused.close()


def test_one_message_cannot_speak_for_many_nodes_or_twice_for_one(net: Net) -> None:
    """Only what relays merge (a barrier entry, heartbeats) may carry several origins; none may repeat one: a
    leaf repeating its own index 5,000 times once made 5,000 messages of one frame."""
    _join(net)
    net.agents[2].send_frames([b"", t.pack([2] * 5000), m.encode(m.Output(2, "stdout")), b"x"])
    net.agents[0].send_frames([b"", t.pack([2, 3]), m.encode(m.Output(2, "stdout")), b"y"])  # a top, to the door
    net.agents[1].send_frames([b"", t.pack([4, 4]), m.encode(m.Heartbeat())])
    assert not [r for r in net.received(0.6) if isinstance(r.msg, (m.Output, m.Heartbeat))]
    assert any("several" in line for line in net.reports)
    assert any("several nodes" in line for line in net.coord.refused)
    assert len(net.coord.refused) == 2


def test_a_barrier_entry_counts_in_any_field_order_and_a_second_entry_replaces_the_first(net: Net) -> None:
    _join(net)
    net.agents[2].send_frames([b'{"puts":{"a":"1"},"t":"barrier"}'])  # the same message, fields the other way round
    net.agents[2].send(m.Barrier({"b": "2"}))  # entered again: replaces, never adds
    net.agents[3].send(m.Barrier({"c": "3"}))
    net.pump(0.3)
    net.relays[0].up([0], [m.encode(m.Barrier({"d": "4"}))])
    got = [r for r in net.received(3.0, enough=3) if isinstance(r.msg, m.Barrier)]
    assert sorted(r.node for r in got) == [0, 2, 3]
    merged: dict[str, str] = {}
    for r in got:
        merged.update(r.msg.puts)
    assert merged == {"b": "2", "c": "3", "d": "4"}


def test_a_subtrees_telemetry_goes_up_as_one_frame_per_interval(net: Net) -> None:
    _join(net)
    for node in (2, 3):
        net.agents[node].send(m.Telemetry(10.0 * node, 1.0, node << 20, 0, 1))
    net.relays[0].up([0], [m.encode(m.Telemetry(5.0, 1.0, 1 << 20, 0, 1))])
    net.pump(0.3)
    assert net.coord.recv(50) is None  # held until the relay's beat
    frames_before = net.coord.frames_in
    net.relays[0].beat()
    got = [r for r in net.received(3.0, enough=3) if isinstance(r.msg, m.Telemetry)]
    assert sorted((r.node, r.msg.cpu_pct) for r in got) == [(0, 5.0), (2, 20.0), (3, 30.0)]
    assert net.coord.frames_in - frames_before == 1  # three samples, one frame (the relay's own included)


def test_relayed_telemetry_must_match_its_origins(net: Net) -> None:
    _join(net)
    sample = m.encode(m.Telemetry(1.0, 1.0, 1, 0, 1))
    net.agents[0].send_frames([b"", t.pack([2, 3]), b"[" + sample + b"]"])  # two origins, one sample
    net.agents[0].send_frames([b"", t.pack([2, 3]), b'[{"t":"exit","rank":2,"code":0},' + sample + b"]"])
    assert not [r for r in net.received(0.6) if not isinstance(r.msg, m.Heartbeat)]
    assert net.coord.refused == ["node 0 relayed telemetry that does not match its origins; dropped"] * 2


def test_one_nodes_sample_alone_still_goes_up_as_a_list(net: Net) -> None:
    """Seen at 128 nodes: a relay whose only pending sample was one child's sent a one-item list, which the
    coordinator read as a plain message and refused."""
    _join(net)
    net.agents[2].send(m.Telemetry(7.0, 1.0, 1, 0, 1))
    net.pump(0.3)
    net.relays[0].beat()
    got = [r for r in net.received(3.0, enough=1) if isinstance(r.msg, m.Telemetry)]
    assert [(r.node, r.msg.cpu_pct) for r in got] == [(2, 7.0)] and net.coord.refused == []
