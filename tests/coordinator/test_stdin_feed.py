"""StdinFeed with a real pipe and a real ZeroMQ socket: what it returns, and that it waits once stdin has ended
(the coordinator's loop reads the socket without waiting after it: a feed that returned at once made it spin)."""

from __future__ import annotations

import os
import time

import pytest
import zmq

from mnp.coordinator.stdin import StdinFeed

pytestmark = pytest.mark.noroot


def test_data_then_end_then_nothing_and_the_wait_is_kept() -> None:
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    a.bind("inproc://feed")
    b.connect("inproc://feed")
    r, w = os.pipe()
    try:
        feed = StdinFeed(r, a)
        os.write(w, b"some input")
        assert feed.read(1000) == b"some input"
        os.close(w)
        w = -1
        assert feed.read(1000) == b""  # its end, once
        t0 = time.monotonic()
        assert feed.read(300) is None
        assert time.monotonic() - t0 >= 0.25, "after the end of stdin, read() returned at once instead of waiting"
        b.send(b"x")
        assert feed.read(10_000) is None  # the socket is ready: the caller reads it
        assert a.recv() == b"x"
    finally:
        if w >= 0:
            os.close(w)
        os.close(r)
        a.close(0)
        b.close(0)
        ctx.term()
