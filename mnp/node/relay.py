"""What a node's agent does for a launcher (mpirun, mpiexec) instead of starting ranks itself.

- :class:`ExecTable`: commands this node runs on another node's launcher's behalf (its daemons), output and exit
  status sent back through the control plane.
- :class:`RshRelay`: on the main node, the private Unix socket where ``mnp-rsh`` (the launcher's remote shell)
  hands its requests to the agent.
- :class:`RankFifos`: per-rank FIFOs into which the launcher's ranks' output goes, so it reaches mnp per rank.

Each works through a small interface of the agent (:class:`Node`): its control channel, its node index, and its
event loop's ``watch_fd``/``unwatch_fd``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
from typing import Any, Protocol

from mnp.control import messages as m

__all__ = ["Node", "ExecTable", "RshRelay", "RankFifos"]


class Node(Protocol):
    node: int

    def send(self, msg: m.ToCoordinator, data: bytes | None = None) -> None: ...

    def watch_fd(self, fd: int, handler: Any) -> None: ...

    def unwatch_fd(self, fd: int) -> None: ...


class ExecTable:
    """Commands this node runs for a launcher elsewhere (``mpirun``'s daemons): ``exec`` in, output and exit out."""

    def __init__(self, agent: Node) -> None:
        self.agent = agent
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.fds: dict[int, tuple[str, str]] = {}  # fd -> (exec id, stream)
        self.exited: dict[str, int] = {}

    def live(self) -> bool:
        return any(p.returncode is None for p in self.procs.values())

    def start(self, xid: str, command: str, env: dict[str, str], preexec: Any = None) -> int | None:
        """Start a (checked) daemon command line; its pid, or None when it could not start (reported)."""
        try:
            p = subprocess.Popen(["/bin/sh", "-c", command], env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                 preexec_fn=preexec)
        except OSError as e:
            self.agent.send(m.ExecOutput(xid, "stderr"), f"mnp: cannot run: {e}\n".encode())
            return None
        self.procs[xid] = p
        for stream, pipe in (("stdout", p.stdout), ("stderr", p.stderr)):
            assert pipe is not None
            fd = pipe.fileno()
            os.set_blocking(fd, False)
            self.fds[fd] = (xid, stream)
            self.agent.watch_fd(fd, self._read)
        return p.pid

    def _read(self, fd: int) -> bool:
        xid, stream = self.fds[fd]
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if data:
            self.agent.send(m.ExecOutput(xid, stream), data)  # type: ignore[arg-type]
            return True
        self.agent.unwatch_fd(fd)
        del self.fds[fd]
        os.close(fd)
        return False

    def reaped(self, pid: int, status: int) -> tuple[str, int] | None:
        """(exec id, return code) when ``pid`` was one of ours; its remaining output is forwarded first."""
        for xid, p in self.procs.items():
            if p.pid == pid and p.returncode is None:
                p.returncode = os.waitstatus_to_exitcode(status)
                for fd in [f for f, (x, _) in self.fds.items() if x == xid]:
                    while fd in self.fds and self._read(fd):
                        pass
                    if fd in self.fds:
                        self.agent.unwatch_fd(fd)
                        del self.fds[fd]
                        os.close(fd)
                return xid, p.returncode
        return None

    def kill(self, xid: str) -> None:
        p = self.procs.get(xid)
        if p is not None and p.returncode is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def signal_all(self, sig: int) -> None:
        for p in self.procs.values():
            if p.returncode is None:
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass


class RankFifos:
    """Output of ranks that a launcher (mpirun, mpiexec) starts on this node: one FIFO per rank and stream in a
    private directory (``$MNP_IO_DIR/<rank>.stdout``), into which the rank's wrapper redirects it. Read here, it
    is forwarded exactly like the output of ranks the agent starts itself -- per rank, never mixed. The agent holds
    each FIFO's write end open too, so a rank that is done (or not yet started) is no end of file."""

    def __init__(self, agent: Node, directory: str, ranks: list[int]) -> None:
        self.agent = agent
        self.fds: dict[int, tuple[int, str, int]] = {}  # read fd -> (rank, stream, write fd)
        for rank in ranks:
            for stream in ("stdout", "stderr"):
                path = os.path.join(directory, f"{rank}.{stream}")
                os.mkfifo(path, 0o600)
                rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                self.fds[rfd] = (rank, stream, wfd)
                agent.watch_fd(rfd, self._read)

    def _read(self, fd: int) -> bool:
        rank, stream, _ = self.fds[fd]
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return False
        if data:
            self.agent.send(m.Output(rank, stream), data)  # type: ignore[arg-type]
        return bool(data)

    def close(self) -> None:
        for rfd, (_, _, wfd) in self.fds.items():
            while self._read(rfd):
                pass
            self.agent.unwatch_fd(rfd)
            os.close(rfd)
            os.close(wfd)
        self.fds.clear()


class RshRelay:
    """The main node's end of ``mnp-rsh``: a private Unix socket where a launcher's remote-shell calls arrive.

    Each connection sends one JSON line ``{"host": H, "command": C}``; the request goes to the coordinator, which
    has the agent of host H run it; its output and exit status come back here and go down the connection as
    frames (1 byte kind: 1 stdout, 2 stderr, 3 exit; 4 bytes length; payload). A connection that closes early
    (the launcher killed its rsh) stops the remote command.
    """

    def __init__(self, agent: Node, path: str) -> None:
        self.agent = agent
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(256)
        self.sock.setblocking(False)
        self.conns: dict[str, socket.socket] = {}
        self.pending: dict[int, tuple[socket.socket, bytes]] = {}
        self.by_fd: dict[int, str] = {}
        self.count = 0
        agent.watch_fd(self.sock.fileno(), self._accept)

    def _accept(self, _fd: int) -> None:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        self.pending[conn.fileno()] = (conn, b"")
        self.agent.watch_fd(conn.fileno(), self._read)

    def _read(self, fd: int) -> None:
        if fd in self.pending:
            conn, buf = self.pending[fd]
            try:
                data = conn.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._drop(fd, conn)
                return
            buf += data
            if b"\n" not in buf:
                self.pending[fd] = (conn, buf)
                return
            del self.pending[fd]
            try:
                req = json.loads(buf.split(b"\n", 1)[0])
            except ValueError:
                req = None
            if not isinstance(req, dict):  # not mnp-rsh speaking: nothing to do for it
                self._drop(fd, conn)
                return
            self.count += 1
            xid = f"{self.agent.node}.{self.count}"
            self.conns[xid] = conn
            self.by_fd[fd] = xid
            self.agent.send(m.Rexec(xid, str(req.get("host", "")), str(req.get("command", ""))))
            return
        known = self.by_fd.get(fd)
        open_conn = self.conns.get(known) if known else None
        if known is None or open_conn is None:
            return
        xid, conn = known, open_conn
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the launcher is done with this remote command
            self.agent.send(m.RexecKill(xid))
            self._drop(fd, conn)
            self.conns.pop(xid, None)  # type: ignore[arg-type]

    def _drop(self, fd: int, conn: socket.socket) -> None:
        self.agent.unwatch_fd(fd)
        self.pending.pop(fd, None)
        self.by_fd.pop(fd, None)
        conn.close()

    def deliver(self, msg: m.RexecOutput | m.RexecExit, data: bytes | None) -> None:
        conn = self.conns.get(msg.id)
        if conn is None:
            return
        if isinstance(msg, m.RexecOutput):
            kind, payload = (1 if msg.stream == "stdout" else 2), data or b""
        else:
            kind, payload = 3, str(msg.code).encode()
        try:
            conn.setblocking(True)
            conn.sendall(struct.pack("!BI", kind, len(payload)) + payload)
            conn.setblocking(False)
        except OSError:
            pass
        if kind == 3:
            self._drop(conn.fileno(), conn)
            self.conns.pop(msg.id, None)

    def close(self) -> None:
        for conn in list(self.conns.values()):
            conn.close()
        self.agent.unwatch_fd(self.sock.fileno())
        self.sock.close()
