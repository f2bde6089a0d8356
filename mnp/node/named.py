"""The node's named processes (``processes:``, ECS's containers) and their health checks, as the agent runs them.

The engine (:mod:`mnp.node.engine`, :mod:`mnp.node.depgraph`) decides when each starts and what a health check's
result means; this module only starts them, forwards their output (``ProcessOutput``), runs health checks within
their timeout and hands exits back. Each is tied to the agent as a rank is: its own session (signals reach its
group), and the node's watchdog or an ancestor that inherits it (``Agent.child_preexec``); it gets the ranks'
environment (secrets stripped) with its own ``env`` on top and ``MNP_PROCESS_NAME``, and reads /dev/null.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from mnp.control import messages as m

if TYPE_CHECKING:
    from mnp.node.agent import Agent

__all__ = ["NamedProcesses", "read_pipe"]


def read_pipe(fd: int) -> bytes | None:
    """What a non-blocking pipe holds now: bytes, ``b""`` at its end (or on an error), None when nothing yet."""
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return None
    except OSError:
        return b""


@dataclass
class _Named:
    name: str
    proc: subprocess.Popen[bytes]
    pipes: dict[int, str] = field(default_factory=dict)  # fd -> "stdout" | "stderr"
    files: dict[int, IO[bytes]] = field(default_factory=dict)  # fd -> its pipe (closed through it, never by number)


@dataclass
class _Check:
    name: str
    proc: subprocess.Popen[bytes]
    deadline: float
    expired: bool = False


class NamedProcesses:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.procs: dict[int, _Named] = {}  # pid -> process
        self.checks: dict[int, _Check] = {}  # pid -> running health check

    def _popen(self, argv: list[str], env: dict[str, str], cwd: str | None,
               out: int) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True, preexec_fn=self.agent.child_preexec())
        if self.agent.watchdog is not None:
            self.agent.watchdog.add_group(proc.pid)
        return proc

    def start(self, spec: m.ProcessStart, base: dict[str, str], cwd: str | None) -> None:
        from mnp.node.processes import SECRET_VARS

        engine = self.agent.engine
        if cwd is not None and not os.path.isdir(cwd):
            self.agent.act(engine.process_failed(spec.name, 126, f"workdir {cwd!r} does not exist on node "
                                                 f"{self.agent.node}"))
            return
        env = {**base, **{k: v for k, v in spec.env.items() if k not in SECRET_VARS}, "MNP_PROCESS_NAME": spec.name}
        try:
            proc = self._popen(spec.argv, env, cwd, subprocess.PIPE)
        except OSError as err:
            self.agent.act(engine.process_failed(spec.name, 127 if err.errno == errno.ENOENT else 126,
                                                 f"cannot start {spec.argv[0]!r}: {err.strerror}"))
            return
        p = self.procs[proc.pid] = _Named(spec.name, proc)
        self.agent.ps.pids_seen.append(proc.pid)
        for stream, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            assert pipe is not None
            fd = pipe.fileno()
            os.set_blocking(fd, False)
            p.pipes[fd], p.files[fd] = stream, pipe
            self.agent.watch_fd(fd, lambda fd, p=p: self._read(p, fd))
        self.agent.act(engine.process_spawned(spec.name, proc.pid))

    def _read(self, p: _Named, fd: int) -> str:
        data = read_pipe(fd)
        if data is None:
            return "again"
        if data:
            self.agent.send(m.ProcessOutput(p.name, p.pipes[fd]), data)  # type: ignore[arg-type]
            return "data"
        self._close_pipe(p, fd)
        return "eof"

    def _close_pipe(self, p: _Named, fd: int) -> None:
        self.agent.unwatch_fd(fd)
        p.pipes.pop(fd, None)
        p.files.pop(fd).close()

    def check(self, name: str, argv: list[str], timeout: float, base: dict[str, str], cwd: str | None) -> None:
        """Run a health check; its exit (or its timeout) is reported to the engine when it is reaped."""
        try:
            proc = self._popen(argv, {**base, "MNP_PROCESS_NAME": name}, cwd, subprocess.DEVNULL)
        except OSError:
            self.agent.act(self.agent.engine.health_result(name, False, time.monotonic()))
            return
        self.checks[proc.pid] = _Check(name, proc, time.monotonic() + timeout)

    def expire(self, now: float) -> None:
        """Health checks past their timeout are killed (and count as failed)."""
        for pid, c in self.checks.items():
            if not c.expired and now > c.deadline:
                c.expired = True
                _killpg(pid, signal.SIGKILL)

    def reaped(self, pid: int, status: int) -> bool:
        """``pid`` ended: report it to the engine if it is ours."""
        c = self.checks.pop(pid, None)
        if c is not None:
            ok = not c.expired and os.waitstatus_to_exitcode(status) == 0
            self.agent.act(self.agent.engine.health_result(c.name, ok, time.monotonic()))
            return True
        p = self.procs.pop(pid, None)
        if p is None:
            return False
        p.proc.returncode = os.waitstatus_to_exitcode(status)
        for fd in list(p.pipes):  # what it wrote before it exited is still in the pipe
            while fd in p.pipes and self._read(p, fd) == "data":
                pass
            if fd in p.pipes:  # a child of it still holds the pipe open: stop listening
                self._close_pipe(p, fd)
        self.agent.act(self.agent.engine.process_exited(p.name, p.proc.returncode))
        return True

    def signal_all(self, sig: int) -> None:
        for pid in [*self.procs, *self.checks]:
            _killpg(pid, sig)

    def close(self) -> None:
        for pid in self.checks:
            _killpg(pid, signal.SIGKILL)


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
