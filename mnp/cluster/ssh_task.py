"""One host's agent over SSH, preflight included, in one process and one SSH channel (see :mod:`mnp.cluster.ssh`).

The coordinator runs ``<python> -c BOOTSTRAP`` on each host: :data:`BOOTSTRAP` is standard library only (so a host
without mnp, or with another Python, still answers), notes the Python version and hostname, imports this module
and calls :func:`main`, which

1. checks MPI in a forked child (``mpi4py.MPI`` loaded with ``rc.initialize = False``: the library is found and
   its version read, no ``MPI_Init``, and the agent itself never loads libmpi) while this process imports the
   agent's modules (pyzmq, msgspec, the node engine);
2. prints one line, ``MNP-PREFLIGHT <JSON>`` (Python version, hostname, mnp version, MPI library, or the error of
   each, and the error of the agent's imports), on stdout, and stops there (exit 3) when any failed;
3. reads its job handoff (endpoint, node index, CURVE keys) as one JSON line on stdin, the same channel, and runs
   :class:`mnp.node.agent.Agent` in this process, watching stdin: end of stdin is the end of the session; or, for
   ``mnp pool start``, a pool handoff, and becomes the host's pool agent (:mod:`mnp.node.poold`).

End of stdin before a handoff (another host failed its preflight, or the user stopped mnp) is a quiet exit 0.
Compared with a preflight command and then an agent command: one Python start-up and one SSH exec per host instead
of two, and the agent's imports overlap with the other hosts' preflights.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

__all__ = ["BOOTSTRAP", "TAG", "main", "preflight", "preflight_problem"]

TAG = "MNP-PREFLIGHT"

BOOTSTRAP = (
    "import json, socket, sys\n"
    "r = {'python': '%d.%d' % sys.version_info[:2], 'hostname': socket.gethostname(), 'mnp': None, 'mpi': None}\n"
    "try:\n from mnp.cluster.ssh_task import main\n"
    "except Exception as e:\n"
    f" r['mnp_error'] = str(e); print('{TAG} ' + json.dumps(r), flush=True); sys.exit(3)\n"
    "sys.exit(main(r))\n"
)


def preflight_problem(info: dict[str, Any], python: str) -> str | None:
    """What stops a host whose preflight answered ``info`` from running an agent (None: nothing). The same rules
    wherever a host is started from: the coordinator, or a relay of the control tree."""
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if info.get("python") != here:
        return (f"Python version mismatch: {info.get('python')} at {python} there, {here} here "
                "(use the same version, or --remote-python)")
    if not info.get("mnp"):
        return f"mnp is not installed for {python} there ({info.get('mnp_error', '')})"
    if not info.get("mpi"):
        return f"MPI not usable for {python} there: {info.get('mpi_error', '')}"
    if info.get("agent_error"):
        return f"mnp's agent cannot start with {python} there: {info['agent_error']}"
    return None


def _mpi_check() -> tuple[int, int]:
    """Fork a child that loads mpi4py's MPI and writes its library version (or ``!error``) on a pipe; returns
    (pid, read end). Forked before anything starts a thread here."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)  # the SSH channel is the agent's: the library reads and writes none of it
            os.dup2(null, 1)
            try:
                import mpi4py

                mpi4py.rc.initialize = False
                mpi4py.rc.finalize = False
                from mpi4py import MPI

                said = MPI.Get_library_version().splitlines()[0].strip() or "MPI (no version string)"
            except Exception as e:  # noqa: BLE001 - anything that stops the import is the answer
                said = "!" + (str(e) or type(e).__name__)
            os.write(w, said.encode(errors="replace"))
        finally:
            os._exit(0)
    os.close(w)
    return pid, r


def _collect(pid: int, fd: int) -> str:
    out = b""
    while chunk := os.read(fd, 65536):
        out += chunk
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    if not out:
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else "no answer"
        return f"!the MPI check died ({how})"
    return out.decode(errors="replace")


def preflight(facts: dict[str, Any]) -> Any:
    """Fill in ``facts`` (mnp's version, MPI's library or its error, the agent's import error) and return the
    agent's module, or None when it cannot be imported. Forks the MPI check: call it before any thread starts."""
    import mnp

    facts["mnp"] = mnp.__version__
    pid, fd = _mpi_check()
    agent: Any = None
    try:
        from mnp.node import agent  # while the MPI check runs, and the coordinator waits for the other hosts
    except Exception as e:  # noqa: BLE001 - a dependency missing or broken: said in the preflight line
        facts["agent_error"] = str(e) or type(e).__name__
    said = _collect(pid, fd)
    if said.startswith("!"):
        facts["mpi_error"] = said[1:]
    else:
        facts["mpi"] = said
    return agent


def main(facts: dict[str, Any]) -> int:
    agent = preflight(facts)
    sys.stdout.write(f"{TAG} {json.dumps(facts)}\n")
    sys.stdout.flush()
    if agent is None or facts["mpi"] is None:
        return 3
    line = agent._readline(sys.stdin.fileno())
    if not line.strip():
        return 0  # the coordinator went away, or stopped the job before it started: nothing to do
    handoff = json.loads(line)
    if "pool" in handoff:  # `mnp pool start`: stay as this host's pool agent, detached from the session
        from mnp.node import poold

        return poold.start(handoff["pool"], facts)
    agent._logging()
    try:
        return int(agent.Agent(handoff).run())
    finally:
        import gc

        gc.freeze()  # the interpreter's exit then skips its last collections: the SSH session ends ~30 ms sooner
