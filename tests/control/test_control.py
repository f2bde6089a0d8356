"""The control plane over real ZeroMQ sockets on loopback: CURVE keys admit the job's agents only, a peer's node
comes from its key, and frames that are not messages an agent may send come back as InvalidMessage."""

from __future__ import annotations

import time

import pytest
import zmq

from mnp.control import messages as m
from mnp.control.channel import AgentChannel, CoordinatorChannel, Received, make_keys

pytestmark = pytest.mark.noroot


def _recv(chan: CoordinatorChannel, seconds: float = 5) -> Received | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = chan.recv(100)
        if got:
            return got
    return None


def _agent_recv(agent: AgentChannel, seconds: float = 5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = agent.recv_nowait()
        if got is not None:
            return got
        time.sleep(0.01)
    return None


def test_round_trip_with_data_frame() -> None:
    keys = make_keys(2)
    coord = CoordinatorChannel(keys, "127.0.0.1")
    agent = AgentChannel(coord.endpoint, keys.agent_handoff(1))
    try:
        assert not coord.send(1, m.Ping())  # not connected yet: no route
        agent.send(m.Hello("node1", 2, 123))
        got = _recv(coord)
        assert got is not None and got.node == 1 and got.msg == m.Hello("node1", 2, 123) and got.data is None
        agent.send(m.Output(3, "stdout"), b"line\n")
        got = _recv(coord)
        assert got is not None and got.msg == m.Output(3, "stdout") and got.data == b"line\n"
        assert coord.send(1, m.Kill(2.5))
        assert _agent_recv(agent) == (m.Kill(2.5), None)
        assert not coord.send(7, m.Ping())  # no such agent
    finally:
        agent.close()
        coord.close()


def test_node_comes_from_the_key_not_the_claim() -> None:
    """An agent holding node 0's key is node 0, whatever it says; a second connection with the same key is
    refused and reported."""
    keys = make_keys(3)
    coord = CoordinatorChannel(keys, "127.0.0.1")
    first = AgentChannel(coord.endpoint, keys.agent_handoff(0))
    copy = AgentChannel(coord.endpoint, keys.agent_handoff(0))
    try:
        first.send(m.Hello("node2-pretender", 1, 1))
        got = _recv(coord)
        assert got is not None and got.node == 0
        copy.send(m.Hello("copy", 1, 2))
        assert _recv(coord, 1.0) is None
        assert coord.refused == ["a second connection holding node 0's key was refused"]
        assert coord.send(0, m.Ping()) and _agent_recv(first) == (m.Ping(), None)
        assert copy.recv_nowait() is None  # the copy gets nothing meant for node 0
    finally:
        for a in (first, copy):
            a.sock.linger = 0
            a.close()
        coord.close()


def test_foreign_keys_are_refused() -> None:
    keys = make_keys(1)
    coord = CoordinatorChannel(keys, "127.0.0.1")
    pub, sec = zmq.curve_keypair()  # a key this job never issued
    intruder = AgentChannel(coord.endpoint, {"server_public": keys.server_public.decode(),
                                             "public": pub.decode(), "secret": sec.decode()})
    wrong_server = AgentChannel(coord.endpoint, {**keys.agent_handoff(0),
                                                 "server_public": zmq.curve_keypair()[0].decode()})
    try:
        intruder.send(m.Hello("x", 1, 1))
        wrong_server.send(m.Hello("x", 1, 1))
        assert _recv(coord, 1.5) is None
    finally:
        intruder.sock.linger = 0
        wrong_server.sock.linger = 0
        intruder.close()
        wrong_server.close()
        coord.close()


def test_garbage_and_wrong_role_frames_are_invalid_messages() -> None:
    keys = make_keys(1)
    coord = CoordinatorChannel(keys, "127.0.0.1")
    agent = AgentChannel(coord.endpoint, keys.agent_handoff(0))
    try:
        for frame in (b"\xff\x00junk", b'{"t":"exec","id":"1","command":"id"}', b'{"t":"exit","rank":"zero"}',
                      b'{"t":"nosuch"}', b"[]"):
            agent.sock.send(frame)
            got = _recv(coord)
            assert got is not None and isinstance(got.msg, m.InvalidMessage), frame
        agent.send(m.Heartbeat())
        got = _recv(coord)
        assert got is not None and got.msg == m.Heartbeat()  # the channel still works after them
    finally:
        agent.close()
        coord.close()


def test_process_messages_round_trip_and_keep_their_roles() -> None:
    start = m.Start("kvs", 0, "", "/w", {}, [], processes=[
        m.ProcessStart("db", ["db"], {"A": "1"}, essential=False,
                       health=m.HealthCheck(["check"], 0.5, 1.0, 3, 0.0)),
        m.ProcessStart("app", ["app"], depends_on=[m.DependsOn("db", "HEALTHY"), m.DependsOn("s", "START", 2)])],
        ranks_depend_on=[m.DependsOn("app", "START")])
    for msg in (start, m.PeerProcess(2, "s", started=True)):
        assert m.decode_to_agent(m.encode(msg)) == msg
        assert isinstance(m.decode_to_coordinator(m.encode(msg)), m.InvalidMessage)
    for msg in (m.ProcessStarted("db", 7), m.ProcessHealth("db", True), m.ProcessOutput("db", "stderr"),
                m.ProcessExit("app", 1, None, "not started: ...", started=False)):
        assert m.decode_to_coordinator(m.encode(msg)) == msg
        assert isinstance(m.decode_to_agent(m.encode(msg)), m.InvalidMessage)
    bad = b'{"t":"start","kvsname":"k","size":0,"mapping":"","cwd":"/","env":{},"ranks":[],' \
          b'"processes":[{"name":"a","argv":["a"],"depends_on":[{"name":"b","condition":"READY"}]}]}'
    assert isinstance(m.decode_to_agent(bad), m.InvalidMessage)


def test_an_address_this_host_lacks_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from mnp.errors import UsageError

    keys = make_keys(1)
    with pytest.raises(UsageError, match=r"^the coordinator cannot listen on 192\.0\.2\.99: "):
        CoordinatorChannel(keys, "192.0.2.99")  # TEST-NET-1: never this host's
    monkeypatch.setenv("MNP_BIND_ADDRESS", "192.0.2.99")
    with pytest.raises(UsageError, match=r"^MNP_BIND_ADDRESS: the coordinator cannot listen on 192\.0\.2\.99: "):
        CoordinatorChannel(keys, "192.0.2.99")
    taken = CoordinatorChannel(keys, "127.0.0.1")
    try:
        port = int(taken.endpoint.rsplit(":", 1)[1])
        with pytest.raises(UsageError, match=rf"cannot listen on 127\.0\.0\.1:{port}: Address already in use"):
            CoordinatorChannel(keys, "127.0.0.1", port)
    finally:
        taken.close()
