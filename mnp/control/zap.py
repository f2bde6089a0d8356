"""ZAP (ZeroMQ RFC 27): who may complete a CURVE handshake, and under which user id.

One pure function answers a request; the coordinator answers in a thread of its own (:class:`ZapThread`: a
ROUTER server's handshakes must not wait for the coordinator's loop), a relay in its agent's loop
(:mod:`mnp.node.treerelay`). pyzmq's own authenticator does the same with asyncio, which costs every launch about
15 ms of imports.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import zmq
from zmq.utils import z85

__all__ = ["ENDPOINT", "reply", "ZapThread"]

ENDPOINT = "inproc://zeromq.zap.01"


def reply(request: list[bytes], user_of: Callable[[bytes], str | None]) -> list[bytes]:
    """The answer to one ZAP request: 200 with the user id ``user_of(Z85 public key)`` gives, else 400."""
    version, request_id = (request + [b"", b""])[:2]
    key = request[6] if len(request) >= 7 and request[5] == b"CURVE" else b""
    user = user_of(z85.encode(key)) if len(key) == 32 else None
    if user is None:
        return [version, request_id, b"400", b"not a key of this job", b"", b""]
    return [version, request_id, b"200", b"OK", user.encode(), b""]


class ZapThread:
    """Answers the ZAP requests of ``ctx`` until :meth:`stop`."""

    def __init__(self, ctx: zmq.Context[Any], user_of: Callable[[bytes], str | None]) -> None:
        self.ctx, self.user_of = ctx, user_of
        self._stop = threading.Event()
        self._bound = threading.Event()
        self._error: BaseException | None = None
        self._wake = f"inproc://mnp-zap-stop-{id(self):x}"
        self.thread = threading.Thread(target=self._run, name="mnp-zap", daemon=True)
        self.thread.start()
        self._bound.wait()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            sock = self.ctx.socket(zmq.REP)
            sock.linger = 0
            sock.bind(ENDPOINT)
            wake = self.ctx.socket(zmq.PULL)  # stop() says so here: no polling interval to wait out
            wake.linger = 0
            wake.bind(self._wake)
        except zmq.ZMQError as e:
            self._error = e
            self._bound.set()
            return
        self._bound.set()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(wake, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(1000))
                if sock in ready:
                    sock.send_multipart(reply(sock.recv_multipart(), self.user_of))
        finally:
            sock.close()
            wake.close()

    def stop(self) -> None:
        self._stop.set()
        push = self.ctx.socket(zmq.PUSH)
        push.linger = 0
        try:
            push.connect(self._wake)
            push.send(b"", flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the thread ends at its next look at the flag (within a second)
        finally:
            push.close()
        self.thread.join(2)
