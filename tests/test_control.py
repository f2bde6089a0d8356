"""The control plane over real ZeroMQ sockets on loopback: CURVE keys admit the job's agents only."""

from __future__ import annotations

import time

import zmq

from mnp.control.channel import AgentChannel, CoordinatorChannel, make_keys


def _recv(chan: CoordinatorChannel, seconds: float = 5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = chan.recv(100)
        if got:
            return got
    return None


def test_round_trip_with_data_frame() -> None:
    keys = make_keys(2)
    coord = CoordinatorChannel(keys, "127.0.0.1")
    agent = AgentChannel(coord.endpoint, 1, {**keys.agent_handoff(1)})
    try:
        agent.send("hello", node=1, cpus=2)
        node, msg, data = _recv(coord)
        assert (node, msg["t"], msg["cpus"], data) == (1, "hello", 2, None)
        agent.send("output", b"line\n", rank=3, stream="stdout")
        node, msg, data = _recv(coord)
        assert msg == {"t": "output", "rank": 3, "stream": "stdout"} and data == b"line\n"
        assert coord.send(1, "ping")
        deadline = time.monotonic() + 5
        got = None
        while got is None and time.monotonic() < deadline:
            got = agent.recv_nowait()
            time.sleep(0.01)
        assert got == ({"t": "ping"}, None)
        assert not coord.send(7, "ping")  # no such agent: ROUTER_MANDATORY says so
    finally:
        agent.close()
        coord.close()


def test_foreign_keys_are_refused() -> None:
    keys = make_keys(1)
    coord = CoordinatorChannel(keys, "127.0.0.1")
    pub, sec = zmq.curve_keypair()  # a key this job never issued
    intruder = AgentChannel(coord.endpoint, 0, {"server_public": keys.server_public.decode(),
                                                "public": pub.decode(), "secret": sec.decode()})
    wrong_server = AgentChannel(coord.endpoint, 0, {**keys.agent_handoff(0),
                                                    "server_public": zmq.curve_keypair()[0].decode()})
    try:
        intruder.send("hello", node=0)
        wrong_server.send("hello", node=0)
        assert _recv(coord, 1.5) is None
    finally:
        intruder.sock.linger = 0
        wrong_server.sock.linger = 0
        intruder.close()
        wrong_server.close()
        coord.close()
