"""Test job: the rank given by FAIL_RANK exits with FAIL_CODE after MPI init; the others wait for a long time."""

import os
import sys
import time

from mpi4py import MPI

rank = MPI.COMM_WORLD.Get_rank()
if rank == int(os.environ.get("FAIL_RANK", "0")):
    print(f"rank {rank} failing on purpose", flush=True)
    os._exit(int(os.environ.get("FAIL_CODE", "3")))
print(f"rank {rank} waiting", flush=True)
time.sleep(float(os.environ.get("WAIT_S", "120")))
sys.exit(0)
