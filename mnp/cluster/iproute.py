"""Running ``ip`` (iproute2) for the local cluster: each helper in a session of its own (a terminal's Ctrl-C
reaches only the coordinator), recorded before a signal handler can run, and its failures as one
:class:`~mnp.errors.ClusterError` line, never a stray ``BrokenPipeError``."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

from mnp.cluster.nsnode import held_signals
from mnp.errors import ClusterError

__all__ = ["run_ip", "ip_in_namespaces", "reap_helpers", "spawn_helper", "exit_reason", "write_all"]


def exit_reason(returncode: int, stderr: str) -> str:
    """Why a helper failed, in a few words: its last error line, or the signal that killed it."""
    lines = stderr.strip().splitlines()
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}" + (f" ({lines[-1]})" if lines else "")
    return lines[-1] if lines else f"exit code {returncode}"


def spawn_helper(into: list[subprocess.Popen[Any]], argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
    """Start a helper in a session of its own and append it to ``into`` (for :func:`reap_helpers`).

    Its own session: a terminal's Ctrl-C is for mnp, which then tears down in order, not for its helpers. Signals
    are held while it starts, so a handler that raises cannot leave a helper started but unrecorded (the helper
    inherits that mask: it is only ever ended by SIGKILL, or by itself)."""
    with held_signals():
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        into.append(p)
    return p


def reap_helpers(procs: list[subprocess.Popen[Any]]) -> None:
    """Kill the helpers still running (a step cut short) and reap them all."""
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        for pipe in (p.stdin, p.stdout, p.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:  # unflushed input for a helper that is gone
                    pass


def run_ip(*args: str, stdin: str | None = None, check: bool = True) -> str:
    procs: list[subprocess.Popen[Any]] = []
    try:
        p = spawn_helper(procs, ["ip", *args], stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(stdin)  # (a helper that ends before reading it all is not an error here)
    finally:
        reap_helpers(procs)
    if check and p.returncode != 0:
        raise ClusterError(f"ip {' '.join(args[:3])}: {exit_reason(p.returncode, err)}")
    return out


def write_all(fd: int, data: bytes) -> bool:
    """Write ``data`` to a pipe and close it; False when the reader had gone (EPIPE)."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
        return True
    except BrokenPipeError:
        return False
    finally:
        os.close(fd)


def ip_in_namespaces(batches: dict[str, str]) -> None:
    """Run one ``ip -batch`` per network namespace, all at once; ClusterError naming the first that failed.

    Whatever happens (an interrupt included), no helper is left running when this returns or raises."""
    procs: list[subprocess.Popen[Any]] = []
    try:
        for ns, commands in batches.items():
            p = spawn_helper(procs, ["ip", "-n", ns, "-batch", "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
            assert p.stdin is not None
            fd = os.dup(p.stdin.fileno())
            p.stdin.close()
            write_all(fd, commands.encode())  # an early end shows in its exit status and stderr, below
        for ns, p in zip(batches, procs):
            assert p.stderr is not None
            err = p.stderr.read().decode(errors="replace")
            if p.wait() != 0:
                node = ns.rsplit("-", 1)[-1]
                raise ClusterError(f"node{node}: network setup failed: ip -n {ns}: {exit_reason(p.returncode, err)}")
    finally:
        reap_helpers(procs)
