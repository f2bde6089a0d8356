"""The node agent's driver: ``python -m mnp.agent``, one per node, started by a cluster provider.

It reads its job handoff (coordinator endpoint, node index, CURVE keys) as one JSON line on stdin (or a pipe),
dials the coordinator, says hello, and wires :class:`~mnp.node.engine.NodeEngine` -- which decides everything --
to the world: the ZeroMQ channel, the ranks' processes, pipes and PMI sockets, signals, the launcher relays
(:mod:`mnp.node.relay`). On a local node it is the PID namespace's init, so it also reaps whatever is re-parented
to it and ends the node when it exits.

Secrets stay here: ``MNP_JOB_SECRET`` (AWS Batch) is removed from this process's environment at start, and no
rank, launcher or daemon gets it or any key of the job.

This module is imported by every node at start-up, so it stays light: no numba, no MPI, no Click.
"""

from __future__ import annotations

import errno
import json
import logging
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

from mnp.control import messages as m
from mnp.control.channel import AgentChannel
from mnp.fabric.decide import node_facts
from mnp.fabric.shm import remove_job_segments, shm_free
from mnp.node import engine as e
from mnp.node.relay import ExecTable, RankFifos, RshRelay
from mnp.node.watchdog import Watchdog, die_with_parent

__all__ = ["main", "Agent", "rank_environment", "SECRET_VARS"]

log = logging.getLogger("mnp.agent")

#: never passed on to anything the agent starts
SECRET_VARS = ("MNP_JOB_SECRET",)
_NOT_INHERITED = ("PMI_", "PMIX_", "PRTE_", "OMPI_COMM_WORLD", *SECRET_VARS)


def rank_environment(environ: dict[str, str], job_env: dict[str, str], python_bin: str) -> dict[str, str]:
    """What the node's processes get: the agent's environment without process-manager variables and secrets,
    the agent's Python first on PATH (as in an activated venv), then the job's environment."""
    base = {k: v for k, v in environ.items() if not k.startswith(_NOT_INHERITED)}
    dirs = base.get("PATH", os.defpath).split(os.pathsep)
    base["PATH"] = os.pathsep.join([python_bin, *[d for d in dirs if d != python_bin]])
    base.update({k: v for k, v in job_env.items() if k not in SECRET_VARS})
    return base


@dataclass
class _Proc:
    rank: int
    proc: subprocess.Popen[bytes]
    pmi: socket.socket | None = None
    pmi_buf: bytes = b""
    pipes: dict[int, str] = field(default_factory=dict)  # fd -> "stdout" | "stderr"


class Agent:
    def __init__(self, handoff: dict[str, Any]) -> None:
        for var in SECRET_VARS:  # read once by whoever started us; never passed on
            os.environ.pop(var, None)
        self.node: int = int(handoff["node"])
        heartbeat = float(handoff.get("heartbeat_s", 1.0))
        dead = float(handoff.get("dead_s", 15.0))
        self.engine = e.NodeEngine(self.node, heartbeat, dead, float(handoff.get("first_contact_s", dead)),
                                   time.monotonic(), endpoint=handoff["endpoint"])
        self.endpoint: str = handoff["endpoint"]
        self.dialed: str | None = handoff.get("dialed")
        self.command: list[str] | None = handoff.get("command")  # this node's own rank command (AWS Batch)
        self.report_ifaces = bool(handoff.get("report_ifaces"))
        self.chan = AgentChannel(handoff["endpoint"], handoff)
        self.poller = zmq.Poller()
        self.poller.register(self.chan.sock, zmq.POLLIN)
        self.procs: dict[int, _Proc] = {}  # pid -> process
        self.handlers: dict[int, Any] = {}  # fd -> callback(fd): rank pipes, PMI sockets, the relays
        self.execs = ExecTable(self)
        self.rsh: RshRelay | None = None
        self.rank_io: RankFifos | None = None
        self.private: str | None = None
        self.node_env: dict[str, str] = rank_environment(dict(os.environ), {}, os.path.dirname(sys.executable))
        self.kvsname: str | None = None
        self.pids_seen: list[int] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.poller.register(self._wake_r, zmq.POLLIN)
        # A provider that keeps our stdin open (SSH) means: end of stdin is the end of the session, stop.
        self.stdin_fd = sys.stdin.fileno() if handoff.get("watch_stdin") else None
        if self.stdin_fd is not None:
            self.poller.register(self.stdin_fd, zmq.POLLIN)
        self.signals: list[int] = []
        try:  # ties the node's processes to this agent: they die with it, whatever it dies of
            self.watchdog: Watchdog | None = Watchdog.start()
        except OSError as err:
            self.watchdog = None
            log.warning("mnp agent %d: no watchdog (%s): ranks would outlive a killed agent", self.node, err)
        self.pdeathsig = die_with_parent()
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a closed stderr (SSH gone) is no reason to die
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(s, lambda signum, _f: self.signals.append(signum))

    # -- the loop ----------------------------------------------------------------------------------------------
    def send(self, msg: m.ToCoordinator, data: bytes | None = None) -> None:
        self.chan.send(msg, data)

    def hello(self) -> None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cpus = os.cpu_count() or 1
        self.send(m.Hello(socket.gethostname(), cpus, os.getpid(), sys.version.split()[0], self._my_address(),
                          self.dialed, self.command, node_facts(self.report_ifaces)))

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
        while not self.engine.finished:
            self._act(self.engine.on_tick(time.monotonic()))
            while self.signals:
                self._act(self.engine.on_signal(self.signals.pop()))
            for sock, _ in self.poller.poll(timeout=int(min(self.engine.heartbeat_s, 0.5) * 1000)):
                if sock is self.chan.sock:
                    self._drain_control()
                elif sock == self._wake_r:
                    self._drain_wake()
                elif sock == self.stdin_fd:
                    self._read_stdin()
                else:
                    handler = self.handlers.get(sock)
                    if handler is not None:
                        handler(sock)
            self._reap()
        for closer in (self.rsh, self.rank_io):
            if closer is not None:
                closer.close()
        if self.private is not None:
            shutil.rmtree(self.private, ignore_errors=True)
        removed = self._remove_segments()
        if self.watchdog is not None:
            self.watchdog.close()
        self.send(m.Bye(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, removed))
        self.chan.close()
        return self.engine.exit_code

    def _read_stdin(self) -> None:
        assert self.stdin_fd is not None
        try:
            more = os.read(self.stdin_fd, 4096)
        except OSError:
            more = b""
        if not more:
            self.poller.unregister(self.stdin_fd)
            self.stdin_fd = None
            self._act(self.engine.on_session_closed())

    def _drain_control(self) -> None:
        while (got := self.chan.recv_nowait()) is not None:
            self._act(self.engine.on_message(got[0], got[1], time.monotonic()))

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def watch_fd(self, fd: int, handler: Any) -> None:
        self.handlers[fd] = handler
        self.poller.register(fd, zmq.POLLIN)

    def unwatch_fd(self, fd: int) -> None:
        self.handlers.pop(fd, None)
        try:
            self.poller.unregister(fd)
        except KeyError:
            pass

    # -- actions -----------------------------------------------------------------------------------------------
    def _act(self, actions: list[e.NodeAction]) -> None:
        for a in actions:
            if isinstance(a, e.Send):
                self.send(a.msg, a.data)
            elif isinstance(a, e.PmiReply):
                self._pmi_send(a.rank, a.line)
            elif isinstance(a, e.Spawn):
                self._act(self.engine.spawned(*self._spawn(a.start)))
            elif isinstance(a, e.SignalAll):
                self._signal_all(a.sig)
            elif isinstance(a, e.RunExec):
                pid = self.execs.start(a.id, a.command, self.node_env, self.pdeathsig)
                if pid is None:
                    self._act(self.engine.exec_exited(a.id, 127))
                elif self.watchdog is not None:
                    self.watchdog.add_group(pid)
            elif isinstance(a, e.KillExec):
                self.execs.kill(a.id)
            elif isinstance(a, e.DeliverRexec) and self.rsh is not None:
                self.rsh.deliver(a.msg, a.data)
            elif isinstance(a, e.Remount):
                self._remount_shm(a.size)
            elif isinstance(a, e.Log):
                log.warning("mnp agent %d: %s", self.node, a.text)

    def _spawn(self, msg: m.Start) -> tuple[dict[int, int], dict[int, tuple[int, str]]]:
        subst: dict[str, str] = {}
        if msg.files or msg.rsh or msg.io_ranks:
            self.private = tempfile.mkdtemp(prefix="mnp-agent-")  # 0700: ours alone
            for name, content in msg.files.items():
                path = os.path.join(self.private, os.path.basename(name))
                with open(path, "w") as f:
                    f.write(content)
                subst["{" + name + "}"] = path
        base = rank_environment(dict(os.environ), msg.env, os.path.dirname(sys.executable))
        if msg.rsh:
            assert self.private is not None
            self.rsh = RshRelay(self, os.path.join(self.private, "rsh.sock"))
            subst["{rsh}"] = os.path.join(os.path.dirname(sys.executable), "mnp-rsh")
        if msg.io_ranks:
            assert self.private is not None
            self.rank_io = RankFifos(self, self.private, msg.io_ranks)
            base["MNP_IO_DIR"] = self.private
        self.node_env = base
        self.kvsname = msg.kvsname
        if self.watchdog is not None:
            self.watchdog.add_shm(msg.kvsname)
            if self.private is not None:
                self.watchdog.add_dir(self.private)
        if self.rsh is not None:
            base = {**base, "MNP_RSH_SOCKET": self.rsh.path}
        cwd = msg.cwd or None
        pids: dict[int, int] = {}
        failed: dict[int, tuple[int, str]] = {}
        if cwd is not None and not os.path.isdir(cwd):
            return {}, {r.rank: (126, f"workdir {cwd!r} does not exist on node {self.node}") for r in msg.ranks}
        for spec in msg.ranks:
            argv = [subst.get(w, w) for w in spec.argv]
            parent = child = None
            env, keep = base, ()
            if spec.pmi:
                parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                env = {**base, "PMI_FD": str(child.fileno()), "PMI_RANK": str(spec.rank), "PMI_SIZE": str(msg.size),
                       "MNP_RANK": str(spec.rank), "MNP_LOCAL_RANK": str(spec.local_rank),
                       "MPI_LOCALRANKID": str(spec.local_rank), "MPI_LOCALNRANKS": str(len(msg.ranks)),
                       "PMI_HOSTNAME": socket.gethostname()}
                keep = (child.fileno(),)
            try:
                proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, pass_fds=keep, start_new_session=True,
                                        preexec_fn=self.pdeathsig)
            except OSError as err:
                for s in (child, parent):
                    if s is not None:
                        s.close()
                failed[spec.rank] = (127 if err.errno == errno.ENOENT else 126,
                                     f"cannot start {argv[0]!r}: {err.strerror}")
                continue
            p = self.procs[proc.pid] = _Proc(spec.rank, proc)
            if self.watchdog is not None:
                self.watchdog.add_group(proc.pid)
            self.pids_seen.append(proc.pid)
            if child is not None and parent is not None:
                child.close()
                parent.setblocking(False)
                p.pmi = parent
                self.watch_fd(parent.fileno(), lambda _fd, p=p: self._read_pmi(p))
            for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
                assert pipe is not None
                fd = pipe.fileno()
                os.set_blocking(fd, False)
                p.pipes[fd] = name
                self.watch_fd(fd, lambda fd, p=p: self._read_pipe(p, fd))
            pids[spec.rank] = proc.pid
        return pids, failed

    def _remount_shm(self, size: int) -> None:
        """Grow /dev/shm (root, and only because the user opted in); answer with what it has now."""
        error = ""
        if os.geteuid() != 0:
            error = "not root"
        else:
            p = subprocess.run(["mount", "-o", f"remount,size={size}", "/dev/shm"], capture_output=True, text=True)
            error = p.stderr.strip() if p.returncode else ""
        total, free = shm_free("/dev/shm")
        self.send(m.ShmRemounted(total, free, error))

    def _remove_segments(self) -> list[str]:
        """This job's shared-memory files left in /dev/shm (ranks that crashed leave them), and only this job's."""
        if self.kvsname is None:
            return []
        try:
            return [p.name for p in remove_job_segments("/dev/shm", [self.kvsname], pids=self.pids_seen)]
        except OSError:
            return []

    # -- rank I/O ----------------------------------------------------------------------------------------------
    def _read_pipe(self, p: _Proc, fd: int) -> str:
        """Forward what is in a rank's pipe: "data", "again" (nothing now) or "eof" (then it is closed)."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return "again"
        except OSError:
            data = b""
        if data:
            self.send(m.Output(p.rank, p.pipes[fd]), data)  # type: ignore[arg-type]
            return "data"
        self.unwatch_fd(fd)
        p.pipes.pop(fd, None)
        os.close(fd)
        return "eof"

    def _read_pmi(self, p: _Proc) -> None:
        assert p.pmi is not None
        try:
            data = p.pmi.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_pmi(p)
            return
        p.pmi_buf += data
        while b"\n" in p.pmi_buf:
            line, p.pmi_buf = p.pmi_buf.split(b"\n", 1)
            self._act(self.engine.on_pmi_line(p.rank, line.decode(errors="replace")))

    def _pmi_send(self, rank: int, line: str) -> None:
        p = next((p for p in self.procs.values() if p.rank == rank), None)
        if p is None or p.pmi is None:
            return
        try:
            p.pmi.setblocking(True)
            p.pmi.sendall(line.encode())
            p.pmi.setblocking(False)
        except OSError:
            self._close_pmi(p)

    def _close_pmi(self, p: _Proc) -> None:
        if p.pmi is not None:
            self.unwatch_fd(p.pmi.fileno())
            p.pmi.close()
            p.pmi = None

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            done = self.execs.reaped(pid, status)
            if done is not None:
                self._act(self.engine.exec_exited(*done))
                continue
            p = self.procs.pop(pid, None)
            if p is None:
                continue  # an orphan re-parented to us (we are the node's init)
            p.proc.returncode = os.waitstatus_to_exitcode(status)
            for fd in list(p.pipes):  # what the rank wrote before it exited is still in the pipe
                while fd in p.pipes and self._read_pipe(p, fd) == "data":
                    pass
                if fd in p.pipes:  # a child of the rank still holds it open: stop listening
                    self.unwatch_fd(fd)
                    p.pipes.pop(fd)
                    os.close(fd)
            self._close_pmi(p)
            self._act(self.engine.rank_exited(p.rank, p.proc.returncode))

    def _signal_all(self, sig: int) -> None:
        self.execs.signal_all(sig)
        for p in self.procs.values():
            try:
                os.killpg(p.proc.pid, sig)
            except ProcessLookupError:
                pass


def _readline(fd: int) -> str:
    """One line, byte by byte: a buffered read could swallow what comes after it (or block for it)."""
    out = bytearray()
    while not out.endswith(b"\n"):
        b = os.read(fd, 1)
        if not b:
            break
        out += b
    return out.decode()


def _logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.raiseExceptions = False  # a closed stderr (SSH session gone) must not stop the agent


def run_from_fd(fd: int) -> int:
    """A forked node's init: the handoff comes on a pipe instead of stdin."""
    with os.fdopen(fd, "rb") as pipe:
        line = pipe.readline()
    if not line:
        return 2  # the coordinator went away before handing over
    _logging()
    return Agent(json.loads(line)).run()


def main() -> int:
    _logging()
    line = _readline(sys.stdin.fileno())
    if not line:
        log.error("mnp agent: no job handoff on stdin")
        return 2
    handoff = json.loads(line)
    if not handoff.get("watch_stdin"):
        sys.stdin.close()
    return Agent(handoff).run()


if __name__ == "__main__":
    sys.exit(main())
