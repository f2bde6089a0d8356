"""Forking an isolated local node: namespaces by system call, no helper programs.

``fork_node`` forks the caller (which already has the agent's modules loaded, so a node costs a fork, not an
interpreter start-up) into a *keeper* process that joins the node's network namespace, unshares UTS, IPC, mount
and PID namespaces, sets the hostname, mounts the node's own /dev/shm and /etc/hosts, and forks the node's init
(PID 1 of the new PID namespace), which mounts /proc and runs the agent. The keeper waits for the init and exits
with its status. SIGTERM to the keeper kills the init and reaps it before the keeper exits; a death signal ties
init to keeper and keeper to the coordinator, so nothing outlives a coordinator that is killed outright.

Given ``cpus``, the keeper restricts itself to them before it forks the init, so the whole node (its agent, its
ranks, ``nproc``, hwloc) sees only those CPUs.

Signals: the keeper starts its own session, so a terminal's Ctrl-C reaches only the coordinator. SIGINT, SIGTERM and
SIGHUP are held (blocked) from before the fork until the keeper's SIGTERM handler is in place, so a SIGTERM at any
moment either finds no keeper yet or a keeper that will kill its init: no init outlives its keeper unseen. A SIGINT
or SIGHUP that reached the keeper through the coordinator's process group before its setsid is dropped.

Call it before the process starts any thread (ZeroMQ contexts included): only the forking thread survives a fork.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Callable, Collection, Iterator

__all__ = ["NodeProcess", "fork_node", "held_signals"]

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
PR_SET_NAME, PR_SET_PDEATHSIG = 15, 1

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                       ctypes.c_ulong(flags), data.encode() if data else None), f"mount {target}")


def _prctl(option: int, arg: int | bytes) -> None:
    _libc.prctl(option, arg, 0, 0, 0)


_HELD = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Block SIGINT, SIGTERM and SIGHUP in this thread for the ``with`` block; they are delivered when it ends.

    Used around steps that must not be cut in half by a Python signal handler raising (a fork and the record of
    its pid, a teardown).
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class NodeProcess:
    """The keeper of one node, as the coordinator sees it (a Popen-like poll/pid/returncode)."""

    def __init__(self, pid: int, handoff_fd: int) -> None:
        self.pid = pid
        self.handoff_fd = handoff_fd
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> int | None:
        import time

        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        return self.returncode


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:  # it ended on its own
        pass


def fork_node(netns_path: str, hostname: str, shm_bytes: int, hosts_file: str, name: str,
              run: Callable[[int], int], cpus: Collection[int] | None = None) -> NodeProcess:
    """Fork a node; ``run(handoff_fd)`` is the node's init (the agent); ``cpus``, when given, the only CPUs the node
    may use. Returns the keeper as seen from here."""
    parent = os.getpid()
    unheld = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)  # (not a ``with``: the child must keep them held)
    try:
        read_fd, write_fd = os.pipe()
        try:
            pid = os.fork()
        except BaseException:
            os.close(read_fd)
            os.close(write_fd)
            raise
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, unheld)
        raise
    if pid:
        os.close(read_fd)
        signal.pthread_sigmask(signal.SIG_SETMASK, unheld)
        return NodeProcess(pid, write_fd)
    # -- keeper -------------------------------------------------------------------------------------------------
    code = 70
    try:
        os.close(write_fd)
        # Inherited descriptors (other nodes' handoff pipes, the job database, log files) are not the node's.
        os.closerange(3, read_fd)
        os.closerange(read_fd + 1, 1 << 16)
        os.setsid()
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the coordinator died between fork and prctl
            os._exit(1)
        # A terminal's Ctrl-C (or hangup) sent to the coordinator's process group between our fork and setsid is
        # pending here, held: it was meant for the coordinator. Ignoring a signal discards it if pending.
        for s in (signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        for s in _HELD:
            signal.signal(s, signal.SIG_DFL)
        _prctl(PR_SET_NAME, f"mnp-keep-{name}"[:15].encode())
        if cpus:
            os.sched_setaffinity(0, cpus)
        fd = os.open(netns_path, os.O_RDONLY)
        _check(_libc.setns(fd, CLONE_NEWNET), "setns")
        os.close(fd)
        _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID), "unshare")
        _mount("none", "/", None, MS_REC | MS_PRIVATE)
        socket.sethostname(hostname)
        size = f"size={shm_bytes}," if shm_bytes else ""
        _mount("mnp-shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"{size}mode=1777")
        _mount(hosts_file, "/etc/hosts", None, MS_BIND)
        init = os.fork()
        if init == 0:
            # -- the node's init (PID 1 of its PID namespace) ----------------------------------------------------
            try:
                _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # (getppid() is 0 here: the keeper is outside our PID ns)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)
                _prctl(PR_SET_NAME, f"mnp-agent-{name}"[:15].encode())
                _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
                code = run(read_fd)
            except BaseException as e:  # noqa: BLE001 - a node's init reports and exits, never returns
                sys.stderr.write(f"mnp: node {name}: {e}\n")
                code = 70
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(read_fd)
        # SIGTERM to the keeper ends the node at once and reaps its init here, so when the keeper has exited,
        # the node's PID namespace is empty.
        signal.signal(signal.SIGTERM, lambda *_: _kill_quietly(init))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)  # a SIGTERM that came meanwhile runs the handler now
        _, status = os.waitpid(init, 0)
        code = os.waitstatus_to_exitcode(status)
        code = code if code >= 0 else 128 - code
    except BaseException as e:  # noqa: BLE001
        sys.stderr.write(f"mnp: node {name}: {e}\n")
        code = 71
    finally:
        os._exit(code)
