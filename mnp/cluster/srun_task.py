"""One node's agent as a task of an ``srun`` step: ``python -m mnp.cluster.srun_task`` (see :mod:`mnp.cluster.slurm`).

1. Make this node's CURVE key pair (the agent's key on the control plane) and print ``MNP-SRUN-KEY <node name>
   <python version> <job.step> <public key>`` on stdout; srun labels the line with this task's id. The secret
   key stays in this process: nothing secret ever crosses srun.
2. Read the step's shared stdin until the line ``MNP-HANDOFF <node name> <handoff JSON>`` for this node comes
   (coordinator endpoint, its public key, node index: nothing secret), skipping the other nodes' lines. The agent's
   modules are imported while the coordinator gathers every node's key.
3. Run :class:`mnp.node.agent.Agent` in this process (so its parent is slurmstepd), watching stdin: when the
   coordinator closes it (or its srun dies), the agent stops its ranks, as over SSH.

The step's task variables (``SLURM_PROCID``, ``SLURM_STEP_*``..., and any ``PMI_*``/``PMIX_*`` a site's
``MpiDefault`` set) describe this agent step, not the job's ranks: they are removed before the agent starts, so
ranks see what they see under SSH, and an Open MPI or Hydra launcher started by mnp does not take itself for a
Slurm launch of its own. Exit status 3: stdin closed before this node's handoff came; 4: a handoff for another key.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator

__all__ = ["HANDOFF_TAG", "KEY_TAG", "main", "node_name", "scrub_environment"]

KEY_TAG = "MNP-SRUN-KEY"
HANDOFF_TAG = "MNP-HANDOFF"
_KEEP = ("SLURM_CONF",)


def node_name() -> str:
    """This node's name as Slurm knows it (``SLURMD_NODENAME``), else its hostname."""
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]


def scrub_environment(env: dict[str, str] | os._Environ[str]) -> None:
    """Remove Slurm's and PMI's variables (the agent step's, not the ranks' business)."""
    for var in [v for v in env if v.startswith(("SLURM_", "SLURMD_", "PMI_", "PMIX_")) and v not in _KEEP]:
        del env[var]


def _lines(fd: int) -> Iterator[bytes]:
    """Lines of ``fd``, read with ``os.read`` (no buffered file object that would close fd 0 when collected)."""
    buf = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        buf += chunk
        *lines, buf = buf.split(b"\n")
        yield from lines


def main() -> int:
    import zmq

    name = node_name()
    public, secret = zmq.curve_keypair()
    step = f"{os.environ.get('SLURM_JOB_ID', '?')}.{os.environ.get('SLURM_STEP_ID', '?')}"
    sys.stdout.write(f"{KEY_TAG} {name} {sys.version_info[0]}.{sys.version_info[1]} {step} {public.decode()}\n")
    sys.stdout.flush()
    scrub_environment(os.environ)
    from mnp.node import agent  # while the coordinator gathers the other nodes' keys

    for raw in _lines(0):
        words = raw.decode(errors="replace").split(" ", 2)
        if len(words) == 3 and words[0] == HANDOFF_TAG and words[1] == name:
            handoff = json.loads(words[2])
            if handoff.get("public") != public.decode():
                sys.stderr.write(f"mnp srun task on {name}: the handoff is for another key (a second task here?)\n")
                return 4
            handoff.update(secret=secret.decode(), watch_stdin=True)
            agent._logging()
            return agent.Agent(handoff).run()
    sys.stderr.write(f"mnp srun task on {name}: stdin closed before this node's handoff came\n")
    return 3


if __name__ == "__main__":
    sys.exit(main())
