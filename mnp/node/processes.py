"""The node's processes, as the agent runs them: spawned from a ``Start`` (ranks served PMI-1 over a socket pair,
or a launcher), their stdout/stderr forwarded as they come, their PMI-1 lines handed to the engine, reaped when
they exit. Every process is tied to the agent: its own session (so signals reach its whole group), and either the
kernel's parent-death signal and the node's watchdog, which stops the groups if the agent dies of anything, or an
ancestor that inherits them (:meth:`Agent.child_preexec <mnp.node.agent.Agent.child_preexec>`)."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mnp.control import messages as m
from mnp.fabric.shm import remove_job_segments
from mnp.node.named import NamedProcesses, read_pipe
from mnp.node.relay import ExecTable, RankFifos, RshRelay

if TYPE_CHECKING:
    from mnp.node.agent import Agent

__all__ = ["Processes", "rank_environment", "SECRET_VARS", "AGENT_TOKEN_VAR"]

#: never passed on to anything the agent starts
SECRET_VARS = ("MNP_JOB_SECRET",)
#: set in the environment of everything a pool-forked agent starts: the pool agent's mark for that agent's processes
AGENT_TOKEN_VAR = "MNP_POOL_AGENT"
_NOT_INHERITED = ("PMI_", "PMIX_", "PRTE_", "OMPI_COMM_WORLD", AGENT_TOKEN_VAR, *SECRET_VARS)


def rank_environment(environ: dict[str, str], job_env: dict[str, str], python_bin: str) -> dict[str, str]:
    """What the node's processes get: the agent's environment without process-manager variables and secrets,
    the agent's Python first on PATH (as in an activated venv), then the job's environment."""
    base = {k: v for k, v in environ.items() if not k.startswith(_NOT_INHERITED)}
    dirs = base.get("PATH", os.defpath).split(os.pathsep)
    base["PATH"] = os.pathsep.join([python_bin, *[d for d in dirs if d != python_bin]])
    base.update({k: v for k, v in job_env.items() if k not in SECRET_VARS})
    return base


@contextlib.contextmanager
def _bound(cpus: list[int] | None) -> Iterator[None]:
    """A rank's binding: the CPUs it was given that this node may use (none of them: it keeps the node's set).
    The spawning thread takes them for the moment of the spawn and the child inherits them, so nothing needs to run
    in the child between fork and exec (Linux: the affinity of pid 0 is the calling thread's)."""
    before = os.sched_getaffinity(0) if cpus else set()
    mine = sorted(set(cpus or ()) & before)
    if not mine:
        yield
        return
    os.sched_setaffinity(0, mine)
    try:
        yield
    finally:
        for back in (before, range(os.cpu_count() or 1)):  # (the second: the node's CPUs changed meanwhile)
            try:
                os.sched_setaffinity(0, back)
                break
            except OSError:
                continue


@dataclass
class _Proc:
    rank: int
    proc: subprocess.Popen[bytes]
    pmi: socket.socket | None = None
    pmi_buf: bytes = b""
    pipes: dict[int, str] = field(default_factory=dict)  # fd -> "stdout" | "stderr"



@dataclass
class _Feed:
    fd: int
    pending: bytearray = field(default_factory=bytearray)
    eof: bool = False
    waiting: bool = False  # registered for "writable"


class Processes:
    """What runs on this node for the job; ``agent`` gives the channel, the event loop and the engine."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.procs: dict[int, _Proc] = {}  # pid -> process
        self.execs = ExecTable(agent)
        self.rsh: RshRelay | None = None
        self.rank_io: RankFifos | None = None
        self.private: str | None = None
        self.kvsname: str | None = None
        self.pids_seen: list[int] = []
        self.node_env: dict[str, str] = {}
        self.stdin: dict[int, _Feed] = {}  # rank -> what is still to be written to its standard input
        self.base: dict[str, str] | None = None
        self.subst: dict[str, str] = {}
        self.named = NamedProcesses(agent)

    def prepare(self, msg: m.Start) -> dict[str, str]:
        """Once per job: the private directory, the relays and the environment every process here starts from."""
        if self.base is not None:
            return self.base
        subst: dict[str, str] = {}
        own_tmp = self.agent.private_root is not None and "TMPDIR" not in msg.env
        if msg.files or msg.rsh or msg.io_ranks or own_tmp:
            import tempfile  # only a job that needs a private directory: tempfile pulls in shutil (bz2, lzma)

            self.private = tempfile.mkdtemp(prefix="mnp-agent-", dir=self.agent.private_root)  # 0700: ours alone
            for name, content in msg.files.items():
                path = os.path.join(self.private, os.path.basename(name))
                with open(path, "w") as f:
                    f.write(content)
                subst["{" + name + "}"] = path
        base = rank_environment(dict(os.environ), msg.env, os.path.dirname(sys.executable))
        if self.agent.watchdog is not None and self.agent.watchdog.token:
            base[AGENT_TOKEN_VAR] = self.agent.watchdog.token  # what a pool agent knows this agent's processes by
        if own_tmp:  # nodes on one machine: one /tmp, and PRRTE's /tmp/prte.<host>.<pid> collides across nodes
            assert self.private is not None
            base["TMPDIR"] = os.path.join(self.private, "tmp")
            os.mkdir(base["TMPDIR"], 0o700)
        if msg.rsh:
            assert self.private is not None
            self.rsh = RshRelay(self.agent, os.path.join(self.private, "rsh.sock"))
            subst["{rsh}"] = os.path.join(os.path.dirname(sys.executable), "mnp-rsh")
        if msg.io_ranks:
            assert self.private is not None
            self.rank_io = RankFifos(self.agent, self.private, msg.io_ranks)
            base["MNP_IO_DIR"] = self.private
        self.node_env = base
        self.kvsname = msg.kvsname
        if self.agent.watchdog is not None:
            self.agent.watchdog.add_shm(msg.kvsname)
            if self.private is not None:
                self.agent.watchdog.add_dir(self.private)
        self.subst, self.base = subst, base
        return base

    def spawn(self, msg: m.Start) -> tuple[dict[int, int], dict[int, tuple[int, str]]]:
        base, subst = self.prepare(msg), self.subst
        if self.rsh is not None:
            base = {**base, "MNP_RSH_SOCKET": self.rsh.path}
        cwd = msg.cwd or None
        pids: dict[int, int] = {}
        failed: dict[int, tuple[int, str]] = {}
        if cwd is not None and not os.path.isdir(cwd):
            return {}, {r.rank: (126, f"workdir {cwd!r} does not exist on node {self.agent.node}") for r in msg.ranks}
        preexec = self.agent.child_preexec()
        for spec in msg.ranks:
            argv = [subst.get(w, w) for w in spec.argv]
            parent = child = None
            env, keep = base, ()  # type: tuple[dict[str, str], tuple[int, ...]]
            if spec.pmi:
                parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                env = {**base, "PMI_FD": str(child.fileno()), "PMI_RANK": str(spec.rank), "PMI_SIZE": str(msg.size),
                       "MNP_RANK": str(spec.rank), "MNP_LOCAL_RANK": str(spec.local_rank),
                       "MPI_LOCALRANKID": str(spec.local_rank), "MPI_LOCALNRANKS": str(len(msg.ranks)),
                       "PMI_HOSTNAME": socket.gethostname()}
                keep = (child.fileno(),)
            try:
                feed = spec.rank in msg.stdin_ranks
                with _bound(spec.cpus):
                    proc = subprocess.Popen(argv, env=env, cwd=cwd,
                                            stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=keep,
                                            start_new_session=True, preexec_fn=preexec)
            except OSError as err:
                for s in (child, parent):
                    if s is not None:
                        s.close()
                failed[spec.rank] = (127 if err.errno == errno.ENOENT else 126,
                                     f"cannot start {argv[0]!r}: {err.strerror}")
                continue
            p = self.procs[proc.pid] = _Proc(spec.rank, proc)
            if proc.stdin is not None:
                fd = os.dup(proc.stdin.fileno())
                proc.stdin.close()
                os.set_blocking(fd, False)
                self.stdin[spec.rank] = _Feed(fd)
            if self.agent.watchdog is not None:
                self.agent.watchdog.add_group(proc.pid)
            self.pids_seen.append(proc.pid)
            if child is not None and parent is not None:
                child.close()
                parent.setblocking(False)
                p.pmi = parent
                self.agent.watch_fd(parent.fileno(), lambda _fd, p=p: self._read_pmi(p))
            for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
                assert pipe is not None
                fd = pipe.fileno()
                os.set_blocking(fd, False)
                p.pipes[fd] = name
                self.agent.watch_fd(fd, lambda fd, p=p: self._read_pipe(p, fd))
            pids[spec.rank] = proc.pid
        return pids, failed

    def write_stdin(self, ranks: list[int], data: bytes, eof: bool) -> None:
        """Queue bytes for these ranks' standard input (a rank that reads slowly never blocks the agent)."""
        for rank in ranks:
            feed = self.stdin.get(rank)
            if feed is not None:
                feed.pending += data
                feed.eof = feed.eof or eof
                self._flush(rank)

    def _flush(self, rank: int) -> None:
        feed = self.stdin[rank]
        try:
            while feed.pending:
                feed.pending = feed.pending[os.write(feed.fd, feed.pending):]
        except BlockingIOError:
            if not feed.waiting:
                feed.waiting = True
                self.agent.watch_fd(feed.fd, lambda _fd, rank=rank: self._flush(rank), writable=True)
            return
        except OSError:  # the rank closed its stdin or is gone: what is left has no reader
            feed.pending.clear()
            feed.eof = True
        if feed.waiting:
            feed.waiting = False
            self.agent.unwatch_fd(feed.fd)
        if feed.eof:
            self._close_stdin(rank)

    def _close_stdin(self, rank: int) -> None:
        feed = self.stdin.pop(rank, None)
        if feed is not None:
            if feed.waiting:
                self.agent.unwatch_fd(feed.fd)
            os.close(feed.fd)

    def _read_pipe(self, p: _Proc, fd: int) -> str:
        """Forward what is in a rank's pipe: "data", "again" (nothing now) or "eof" (then it is closed)."""
        data = read_pipe(fd)
        if data is None:
            return "again"
        if data:
            self.agent.send(m.Output(p.rank, p.pipes[fd]), data)  # type: ignore[arg-type]
            return "data"
        self.agent.unwatch_fd(fd)
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
            self.agent.act(self.agent.engine.on_pmi_line(p.rank, line.decode(errors="replace")))

    def pmi_send(self, rank: int, line: str) -> None:
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
            self.agent.unwatch_fd(p.pmi.fileno())
            p.pmi.close()
            p.pmi = None

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if (sp := getattr(self.agent, "spawner", None)) is not None and sp.reaped(pid, status):
                continue  # an ssh client of this relay's children (mnp.node.spawner)
            done = self.execs.reaped(pid, status)
            if done is not None:
                self.agent.act(self.agent.engine.exec_exited(*done))
                continue
            if self.named.reaped(pid, status):
                continue
            p = self.procs.pop(pid, None)
            if p is None:
                continue  # an orphan re-parented to us (we are the node's init)
            p.proc.returncode = os.waitstatus_to_exitcode(status)
            for fd in list(p.pipes):  # what the rank wrote before it exited is still in the pipe
                while fd in p.pipes and self._read_pipe(p, fd) == "data":
                    pass
                if fd in p.pipes:  # a child of the rank still holds it open: stop listening
                    self.agent.unwatch_fd(fd)
                    p.pipes.pop(fd)
                    os.close(fd)
            self._close_pmi(p)
            self._close_stdin(p.rank)
            self.agent.act(self.agent.engine.rank_exited(p.rank, p.proc.returncode))

    def signal_all(self, sig: int) -> None:
        self.execs.signal_all(sig)
        self.named.signal_all(sig)
        for p in self.procs.values():
            try:
                os.killpg(p.proc.pid, sig)
            except ProcessLookupError:
                pass

    def close(self) -> list[str]:
        """The agent is done: relays closed, private directory gone, and this job's shared-memory files left in
        /dev/shm (ranks that crashed leave them) removed -- only this job's; returns their names."""
        self.named.close()
        for closer in (self.rsh, self.rank_io):
            if closer is not None:
                closer.close()
        if self.private is not None:
            import shutil  # only when prepare made a private directory

            shutil.rmtree(self.private, ignore_errors=True)
        if self.kvsname is None:
            return []
        try:
            return [p.name for p in remove_job_segments("/dev/shm", [self.kvsname], pids=self.pids_seen)]
        except OSError:
            return []

    # -- rank I/O ----------------------------------------------------------------------------------------------
