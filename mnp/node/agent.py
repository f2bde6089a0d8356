"""The node agent: ``mnp agent``, one per node, started by a cluster provider.

It reads its job handoff (coordinator endpoint, node index, CURVE keys) as one JSON line on stdin, dials the
coordinator, says hello, and then does what it is told: start the node's ranks and serve PMI-1 to them, stream
their output, report their exits, stop them. On a local node it is the PID namespace's init, so it also reaps
whatever is re-parented to it and ends the node when it exits.

Liveness both ways: the agent sends a heartbeat every ``heartbeat_s``; if it hears nothing from the coordinator
for ``dead_s`` it kills its ranks and exits (no orphans when the main node disappears).

This module is imported by every node at start-up, so it stays light: no pydantic, no numba, no MPI.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import zmq

from mnp.control.channel import AgentChannel
from mnp.fabric.decide import node_facts
from mnp.node.pmi import PmiEvent, PmiServer
from mnp.node.relay import ExecTable, RankFifos, RshRelay
from mnp.fabric.shm import remove_job_segments, shm_free

__all__ = ["main", "Agent"]


@dataclass
class _Rank:
    rank: int
    local_rank: int
    proc: subprocess.Popen[bytes] | None = None
    pmi: socket.socket | None = None
    pmi_buf: bytes = b""
    pipes: dict[int, str] = field(default_factory=dict)  # fd -> "stdout" | "stderr"
    exited: bool = False


class Agent:
    def __init__(self, handoff: dict[str, Any]) -> None:
        self.node: int = int(handoff["node"])
        self.heartbeat_s: float = float(handoff.get("heartbeat_s", 1.0))
        self.dead_s: float = float(handoff.get("dead_s", 15.0))
        # Until the coordinator is first heard from, wait this long (nodes that dial in may start first).
        self.first_contact_s: float = float(handoff.get("first_contact_s", self.dead_s))
        self.heard = False
        self.endpoint: str = handoff["endpoint"]
        self.dialed: str | None = handoff.get("dialed")
        self.command: list[str] | None = handoff.get("command")  # this node's own rank command (AWS Batch)
        self.report_ifaces = bool(handoff.get("report_ifaces"))
        self.chan = AgentChannel(handoff["endpoint"], self.node, handoff)
        self.poller = zmq.Poller()
        self.poller.register(self.chan.sock, zmq.POLLIN)
        self.ranks: dict[int, _Rank] = {}
        self.handlers: dict[int, Any] = {}  # fd -> callback(fd): rank pipes, PMI sockets, the relays
        self.execs = ExecTable(self)
        self.rsh: RshRelay | None = None
        self.rank_io: RankFifos | None = None
        self.private: str | None = None
        self.node_env: dict[str, str] = dict(os.environ)
        self.by_pid: dict[int, _Rank] = {}
        self.pmi: PmiServer | None = None
        self.running = True
        self.kill_deadline: float | None = None
        self.last_heard = time.monotonic()
        self.last_sent = 0.0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.poller.register(self._wake_r, zmq.POLLIN)
        # A provider that keeps our stdin open (SSH) means: end of stdin is the end of the session, stop.
        self.stdin_fd = sys.stdin.fileno() if handoff.get("watch_stdin") else None
        if self.stdin_fd is not None:
            self.poller.register(self.stdin_fd, zmq.POLLIN)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, self._on_term)
        signal.signal(signal.SIGUSR1, self._on_term)

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def _on_term(self, signum: int, _frame: Any) -> None:
        self.stop_ranks(grace=2.0)
        self.running = False

    def hello(self) -> None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cpus = os.cpu_count() or 1
        self.chan.send("hello", node=self.node, hostname=socket.gethostname(), cpus=cpus, pid=os.getpid(),
                       python=sys.version.split()[0], address=self._my_address(), dialed=self.dialed, command=self.command,
                       fabric=node_facts(self.report_ifaces))

    def _my_address(self) -> str | None:
        """The address this node has on the way to the coordinator (no packet is sent)."""
        host = self.endpoint.rsplit(":", 1)[0].removeprefix("tcp://")
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect((host, 9))
                return str(s.getsockname()[0])
        except OSError:
            return None

    def run(self) -> int:
        self.hello()
        code = 0
        while self.running or self._live_ranks():
            now = time.monotonic()
            if now - self.last_sent >= self.heartbeat_s:
                self.chan.send("heartbeat", node=self.node)
                self.last_sent = now
            limit = self.dead_s if self.heard else self.first_contact_s
            if now - self.last_heard > limit and self.running:
                what = "silent" if self.heard else "not reachable"
                sys.stderr.write(f"mnp agent {self.node}: coordinator {what} for {limit:g}s ({self.endpoint}); "
                                 "stopping\n")
                self.stop_ranks(grace=1.0)
                self.running = False
                code = 1
            if self.kill_deadline is not None and now >= self.kill_deadline:
                self._signal_ranks(signal.SIGKILL)
                self.kill_deadline = None
            for sock, _ in self.poller.poll(timeout=int(min(self.heartbeat_s, 0.5) * 1000)):
                if sock is self.chan.sock:
                    self._drain_control()
                elif sock == self._wake_r:
                    self._drain_wake()
                elif sock == self.stdin_fd:
                    if not os.read(self.stdin_fd, 4096):
                        sys.stderr.write(f"mnp agent {self.node}: session closed; stopping\n")
                        self.poller.unregister(self.stdin_fd)
                        self.stdin_fd = None
                        self.stop_ranks(grace=2.0)
                        self.running = False
                else:
                    self._on_fd(sock)
            self._reap()
        if self.rsh is not None:
            self.rsh.close()
        if self.rank_io is not None:
            self.rank_io.close()
        if self.private is not None:
            shutil.rmtree(self.private, ignore_errors=True)
        removed = self._remove_segments()
        self.chan.send("bye", node=self.node, maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                       shm_removed=removed)
        self.chan.close()
        return code

    def _live_ranks(self) -> bool:
        return any(not r.exited and r.proc is not None for r in self.ranks.values()) or self.execs.live()

    def watch_fd(self, fd: int, handler: Any) -> None:
        self.handlers[fd] = handler
        self.poller.register(fd, zmq.POLLIN)

    def unwatch_fd(self, fd: int) -> None:
        self.handlers.pop(fd, None)
        try:
            self.poller.unregister(fd)
        except KeyError:
            pass

    # -- control messages --------------------------------------------------------------------------------------
    def _drain_control(self) -> None:
        while (got := self.chan.recv_nowait()) is not None:
            msg, data = got
            self.last_heard = time.monotonic()
            self.heard = True
            kind = msg["t"]
            if kind == "start":
                self.start(msg)
            elif kind == "barrier_done":
                assert self.pmi is not None
                for rank, line in self.pmi.barrier_done(msg["kvs"]):
                    self._pmi_send(self.ranks[rank], line)
            elif kind == "kill":
                self.stop_ranks(float(msg.get("grace", 5.0)))
            elif kind == "remount_shm":
                self._remount_shm(int(msg["bytes"]))
            elif kind == "exec":
                self.execs.start(msg["id"], msg["command"], self.node_env)
            elif kind == "exec_kill":
                self.execs.kill(msg["id"])
            elif kind in ("rexec_output", "rexec_exit") and self.rsh is not None:
                self.rsh.deliver(msg, data)
            elif kind == "shutdown":
                self.stop_ranks(grace=1.0)
                self.running = False

    def _remount_shm(self, size: int) -> None:
        """Grow /dev/shm (root, and only because the user opted in); answer with what it has now."""
        error = ""
        if os.geteuid() != 0:
            error = "not root"
        else:
            p = subprocess.run(["mount", "-o", f"remount,size={size}", "/dev/shm"], capture_output=True, text=True)
            error = p.stderr.strip() if p.returncode else ""
        total, free = shm_free("/dev/shm")
        self.chan.send("shm_remounted", node=self.node, total=total, free=free, error=error)

    def _remove_segments(self) -> list[str]:
        """This job's shared-memory files left in /dev/shm (ranks that crashed leave them), and only this job's."""
        if self.pmi is None:
            return []
        pids = [r.proc.pid for r in self.ranks.values() if r.proc is not None]
        try:
            return [p.name for p in remove_job_segments("/dev/shm", [self.pmi.kvsname], pids=pids)]
        except OSError:
            return []

    def start(self, msg: dict[str, Any]) -> None:
        ranks = msg["ranks"]
        subst: dict[str, str] = {}
        if msg.get("files") or msg.get("rsh") or msg.get("io_ranks"):
            self.private = tempfile.mkdtemp(prefix="mnp-agent-")  # 0700: ours alone
            for name, content in (msg.get("files") or {}).items():
                path = os.path.join(self.private, name)
                with open(path, "w") as f:
                    f.write(content)
                subst["{" + name + "}"] = path
        if msg.get("rsh"):
            assert self.private is not None
            self.rsh = RshRelay(self, os.path.join(self.private, "rsh.sock"))
            subst["{rsh}"] = os.path.join(os.path.dirname(sys.executable), "mnp-rsh")
        self.pmi = PmiServer(kvsname=msg["kvsname"], size=int(msg["size"]),
                             local_ranks=[r["rank"] for r in ranks], universe_size=int(msg["size"]),
                             kvs={"PMI_process_mapping": msg["mapping"]},
                             on_barrier=lambda puts: self.chan.send("barrier", node=self.node, puts=puts),
                             on_event=self._pmi_event)
        base = dict(os.environ)
        for key in [k for k in base if k.startswith(("PMI_", "PMIX_", "PRTE_", "OMPI_COMM_WORLD"))]:
            del base[key]
        # Ranks see the agent's Python environment first on PATH, as in an activated venv: `python` in a job is the
        # interpreter mnp (and its mpi4py) runs under, not whatever else PATH finds first.
        venv_bin = os.path.dirname(sys.executable)
        dirs = base.get("PATH", os.defpath).split(os.pathsep)
        base["PATH"] = os.pathsep.join([venv_bin, *[d for d in dirs if d != venv_bin]])
        base.update(msg["env"])
        if msg.get("io_ranks"):
            assert self.private is not None
            self.rank_io = RankFifos(self, self.private, msg["io_ranks"])
            base["MNP_IO_DIR"] = self.private
        self.node_env = base
        if self.rsh is not None:
            base = {**base, "MNP_RSH_SOCKET": self.rsh.path}
        pids = {}
        for spec in ranks:
            r = _Rank(spec["rank"], spec["local_rank"])
            self.ranks[r.rank] = r
            argv = [subst.get(w, w) for w in spec["argv"]]
            parent: socket.socket | None
            child: socket.socket | None
            if spec.get("pmi", True):
                parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                env = {**base, "PMI_FD": str(child.fileno()), "PMI_RANK": str(r.rank), "PMI_SIZE": str(msg["size"]),
                       "MNP_RANK": str(r.rank), "MNP_LOCAL_RANK": str(r.local_rank),
                       "MPI_LOCALRANKID": str(r.local_rank), "MPI_LOCALNRANKS": str(len(ranks)),
                       "PMI_HOSTNAME": socket.gethostname()}
                keep: tuple[int, ...] = (child.fileno(),)  # type: ignore[union-attr]
            else:  # a launcher (mpirun/mpiexec): it brings its own process management
                parent = child = None
                env, keep = base, ()
            try:
                r.proc = subprocess.Popen(argv, env=env, cwd=msg.get("cwd") or None,
                                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          pass_fds=keep, start_new_session=True)
            except OSError as e:
                if child is not None and parent is not None:
                    child.close()
                    parent.close()
                r.exited = True
                code = 127 if e.errno == errno.ENOENT else 126
                self.chan.send("exit", node=self.node, rank=r.rank, code=code, signal=None,
                               reason=f"cannot start {argv[0]!r}: {e.strerror}")
                continue
            if child is not None and parent is not None:
                child.close()
                parent.setblocking(False)
                r.pmi = parent
                self.watch_fd(parent.fileno(), lambda _fd, r=r: self._read_pmi(r))
            for name, pipe in (("stdout", r.proc.stdout), ("stderr", r.proc.stderr)):
                assert pipe is not None
                fd = pipe.fileno()
                os.set_blocking(fd, False)
                r.pipes[fd] = name
                self.watch_fd(fd, lambda fd, r=r: self._read_pipe(r, fd))
            self.by_pid[r.proc.pid] = r
            pids[r.rank] = r.proc.pid
        self.chan.send("started", node=self.node, pids=pids)

    def _pmi_event(self, ev: PmiEvent) -> None:
        if ev.kind == "abort":
            self.chan.send("abort", node=self.node, rank=ev.rank, code=ev.exit_code, message=ev.message)

    # -- ranks -------------------------------------------------------------------------------------------------
    def _on_fd(self, fd: int) -> None:
        handler = self.handlers.get(fd)
        if handler is not None:
            handler(fd)

    def _read_pipe(self, r: _Rank, fd: int) -> str:
        """Forward what is in a rank's pipe: "data", "again" (nothing now) or "eof" (then it is closed)."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return "again"
        except OSError:
            data = b""
        if data:
            self.chan.send("output", data, rank=r.rank, stream=r.pipes[fd])
            return "data"
        self._close_pipe(r, fd)
        return "eof"

    def _close_pipe(self, r: _Rank, fd: int) -> None:
        self.unwatch_fd(fd)
        r.pipes.pop(fd, None)
        os.close(fd)

    def _read_pmi(self, r: _Rank) -> None:
        assert r.pmi is not None and self.pmi is not None
        try:
            data = r.pmi.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_pmi(r)
            return
        r.pmi_buf += data
        while b"\n" in r.pmi_buf:
            line, r.pmi_buf = r.pmi_buf.split(b"\n", 1)
            for reply in self.pmi.handle(r.rank, line.decode(errors="replace")):
                self._pmi_send(r, reply)

    def _pmi_send(self, r: _Rank, line: str) -> None:
        if r.pmi is None:
            return
        try:
            r.pmi.setblocking(True)
            r.pmi.sendall(line.encode())
            r.pmi.setblocking(False)
        except OSError:
            self._close_pmi(r)

    def _close_pmi(self, r: _Rank) -> None:
        if r.pmi is not None:
            self.unwatch_fd(r.pmi.fileno())
            r.pmi.close()
            r.pmi = None

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.execs.reaped(pid, status):
                continue
            r = self.by_pid.pop(pid, None)
            if r is None or r.proc is None:
                continue  # an orphan re-parented to us (we are the node's init)
            r.proc.returncode = os.waitstatus_to_exitcode(status)
            for fd in list(r.pipes):  # what the rank wrote before it exited is still in the pipe
                while self._read_pipe(r, fd) == "data":
                    pass
                if fd in r.pipes:  # a child of the rank still holds it open: stop listening
                    self._close_pipe(r, fd)
            self._close_pmi(r)
            r.exited = True
            sig = -r.proc.returncode if r.proc.returncode < 0 else None
            code = 128 + sig if sig else r.proc.returncode
            self.chan.send("exit", node=self.node, rank=r.rank, code=code,
                           signal=signal.Signals(sig).name if sig else None, reason="")

    def _signal_ranks(self, sig: int) -> None:
        self.execs.signal_all(sig)
        for r in self.ranks.values():
            if r.proc is not None and not r.exited:
                try:
                    os.killpg(r.proc.pid, sig)
                except ProcessLookupError:
                    pass

    def stop_ranks(self, grace: float) -> None:
        if not self._live_ranks():
            return
        self._signal_ranks(signal.SIGTERM)
        deadline = time.monotonic() + grace
        if self.kill_deadline is None or deadline < self.kill_deadline:
            self.kill_deadline = deadline


def _readline(fd: int) -> str:
    """One line, byte by byte: a buffered read could swallow what comes after it (or block for it)."""
    out = bytearray()
    while not out.endswith(b"\n"):
        b = os.read(fd, 1)
        if not b:
            break
        out += b
    return out.decode()


def run_from_fd(fd: int) -> int:
    """A forked node's init: the handoff comes on a pipe instead of stdin."""
    with os.fdopen(fd, "rb") as pipe:
        line = pipe.readline()
    if not line:
        return 2  # the coordinator went away before handing over
    return Agent(json.loads(line)).run()


def main() -> int:
    line = _readline(sys.stdin.fileno())
    if not line:
        sys.stderr.write("mnp agent: no job handoff on stdin\n")
        return 2
    handoff = json.loads(line)
    if not handoff.get("watch_stdin"):
        sys.stdin.close()
    return Agent(handoff).run()


if __name__ == "__main__":
    sys.exit(main())
