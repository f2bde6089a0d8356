"""Test job for Slurm: an MPI hello where every rank also says which process started its agent (the agent is the
rank's parent; under ``--via srun`` the agent's parent is slurmstepd). ``FAIL_RANK``/``FAIL_CODE``: that rank
exits with that code after saying hello."""

import json
import os
import socket
import sys

from mpi4py import MPI


def comm_of(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
agent = os.getppid()
starter = parent_of(agent)
hosts = comm.allgather(socket.gethostname())
print("HELLO " + json.dumps({"rank": rank, "size": size, "host": socket.gethostname(), "hosts": hosts,
                             "agent": comm_of(agent), "agent_parent": comm_of(starter) if starter else "",
                             "slurm_env": sorted(k for k in os.environ if k.startswith("SLURM_"))}), flush=True)
if rank == int(os.environ.get("FAIL_RANK", "-1")):
    sys.exit(int(os.environ.get("FAIL_CODE", "3")))
