"""mnp's own standard input, read while the ranks that take it run (the coordinator forwards it: ``Stdin``)."""

from __future__ import annotations

import os
from typing import Any

import zmq

__all__ = ["StdinFeed"]


class StdinFeed:
    """Waits for ``fd`` or the control socket, whichever comes first, so neither waits on the other."""

    def __init__(self, fd: int, sock: Any) -> None:
        self.fd: int | None = fd
        self.poller = zmq.Poller()
        self.poller.register(sock, zmq.POLLIN)
        self.poller.register(fd, zmq.POLLIN)

    def read(self, timeout_ms: int) -> bytes | None:
        """What stdin has (b"" at its end, then never again), or None when only the socket is ready or time ran
        out. After the end it still waits up to ``timeout_ms`` for the socket: the caller then reads the socket
        without waiting, so returning at once would make its loop spin (a whole core while the ranks ran, for
        every job whose stdin was /dev/null or a finished pipe)."""
        if self.fd is None:
            self.poller.poll(timeout_ms)
            return None
        if self.fd not in dict(self.poller.poll(timeout_ms)):
            return None
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            data = b""
        if not data:
            self.poller.unregister(self.fd)
            self.fd = None
        return data
