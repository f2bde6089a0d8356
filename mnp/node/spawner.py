"""A relay's children over SSH: the next level of the control tree, started by this agent (tree spawn).

For each child host the coordinator's handoff names the ``ssh`` command line (the system OpenSSH client, with the
user's options: config file, identity, known_hosts, strictness, connect timeout, batch mode) and the child's own
handoff. This agent runs it with :data:`~mnp.cluster.ssh_task.BOOTSTRAP`, exactly as the coordinator does for the
top level: the child answers its preflight on stdout, this agent checks it with the same rules
(:func:`mnp.cluster.ssh_task.preflight_problem`), then writes the child's handoff on its stdin (with this relay's
endpoint) and keeps stdin open: when this agent ends, the child's session ends, and so does the child.

A child that cannot be reached, fails its preflight, or whose session ends is reported up as
:class:`~mnp.control.messages.NodeFailed` with the ssh client's last words; the coordinator names the host.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from mnp.cluster.ssh_task import TAG, preflight_problem
from mnp.control import messages as m

__all__ = ["Spawner"]

_MAX_SAID = 64 * 1024  # what is kept of a child's stdout before its preflight line, and of its stderr


@dataclass
class _Child:
    node: int
    name: str
    proc: subprocess.Popen[bytes]
    handoff: dict[str, Any]
    python: str
    out: bytes = b""
    err: bytes = b""
    last_err: str = ""  # its ssh client's last complete line on stderr (the reason when it fails)
    handed: bool = False
    ended: bool = False
    fds: list[int] = field(default_factory=list)


class Spawner:
    """``agent`` gives ``send``, ``watch_fd``, ``unwatch_fd`` and ``relay.endpoint``."""

    def __init__(self, agent: Any, spawn: dict[str, dict[str, Any]]) -> None:
        self.agent = agent
        self.children: dict[int, _Child] = {}
        self.by_pid: dict[int, _Child] = {}
        for key, spec in spawn.items():
            self._start(int(key), spec)

    def _start(self, node: int, spec: dict[str, Any]) -> None:
        name = str(spec["name"])
        try:
            proc = subprocess.Popen([str(a) for a in spec["argv"]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as e:
            self.agent.send(m.NodeFailed(node, name, f"could not run ssh: {e}"))
            return
        assert proc.stdout is not None and proc.stderr is not None
        child = _Child(node, name, proc, dict(spec["handoff"]), str(spec.get("python") or sys.executable))
        child.fds = [proc.stdout.fileno(), proc.stderr.fileno()]
        for fd in child.fds:
            os.set_blocking(fd, False)
            self.agent.watch_fd(fd, lambda fd, c=child: self._readable(c, fd))
        self.children[node] = child
        self.by_pid[proc.pid] = child

    # -- what a child says -------------------------------------------------------------------------------------
    def _readable(self, c: _Child, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.agent.unwatch_fd(fd)
            return
        if c.proc.stderr is not None and fd == c.proc.stderr.fileno():
            c.err = (c.err + data)[-_MAX_SAID:]
            *lines, _ = c.err.split(b"\n")
            for said in lines[-20:]:
                sys.stderr.write(f"[node {c.node} agent] {said.decode(errors='replace')}\n")
            if lines and lines[-1].strip():
                c.last_err = lines[-1].decode(errors="replace").strip()[:300]
            c.err = c.err.rsplit(b"\n", 1)[-1]
            return
        if c.handed:
            return  # an agent writes nothing on stdout once it runs
        c.out = (c.out + data)[-_MAX_SAID:]
        line = next((ln for ln in c.out.split(b"\n")[:-1] if ln.startswith(TAG.encode())), None)
        if line is None:
            return
        try:
            info = json.loads(line.decode(errors="replace").split(" ", 1)[1])
        except (ValueError, IndexError):
            info = None
        problem = preflight_problem(info, c.python) if isinstance(info, dict) else "an unreadable preflight answer"
        if problem:
            self._fail(c, problem)
            return
        handoff = {**c.handoff, "endpoint": self.agent.relay.endpoint, "watch_stdin": True}
        assert c.proc.stdin is not None
        try:
            c.proc.stdin.write(json.dumps(handoff).encode() + b"\n")
            c.proc.stdin.flush()
            c.handed = True
        except OSError as e:
            self._fail(c, f"lost the SSH connection: {e}")

    def _fail(self, c: _Child, problem: str) -> None:
        if not c.ended:
            c.ended = True
            self.agent.send(m.NodeFailed(c.node, c.name, problem, started=c.handed))
        self._kill(c)

    @staticmethod
    def _kill(c: _Child) -> None:
        if c.proc.poll() is None:
            try:
                os.killpg(c.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    # -- the agent's reaper ------------------------------------------------------------------------------------
    def reaped(self, pid: int, status: int) -> bool:
        """``pid`` ended: one of our ssh clients? Reported unless we ended it (or it ended with the job)."""
        c = self.by_pid.pop(pid, None)
        if c is None:
            return False
        c.proc.returncode = code = os.waitstatus_to_exitcode(status)
        if c.proc.stderr is not None:  # what it said last, also when this reap came before its pipe was read
            try:
                self._readable(c, c.proc.stderr.fileno())
            except (OSError, ValueError):
                pass
        last = (c.err.decode(errors="replace").strip() or c.last_err).splitlines()[-1:] or [""]
        if code == 255 and not c.handed:
            why = f"ssh failed: {last[0]}" if last[0] else "ssh failed (exit 255)"
        elif not c.handed:
            why = f"its session ended before the preflight answer (exit {code}){': ' + last[0] if last[0] else ''}"
        else:
            why = f"its agent's SSH session ended (exit {code})"
        if not c.ended and not self.agent.engine.finished:
            self._fail(c, why)
        c.ended = True
        for fd in c.fds:
            self.agent.unwatch_fd(fd)
        for f in (c.proc.stdin, c.proc.stdout, c.proc.stderr):
            if f is not None:
                f.close()
        return True

    def close(self) -> None:
        """This agent ends: the children's sessions end (their stdin closes), then their ssh clients go."""
        for c in self.children.values():
            c.ended = True
            if c.proc.stdin is not None and not c.proc.stdin.closed:
                c.proc.stdin.close()
        deadline = time.monotonic() + 1.0  # one second for all of them, not one each
        for c in self.children.values():
            try:
                c.proc.wait(max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._kill(c)
