"""mpi4py hello: every rank reports where it runs and what the launcher told it."""

import os
import socket

from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
host = socket.gethostname()
hosts = comm.gather(host, root=0)
print(f"hello from rank {rank} of {size} on {host} (node {os.environ.get('MNP_NODE_INDEX')}, "
      f"local rank {os.environ.get('MNP_LOCAL_RANK')})")
if rank == 0:
    print(f"{size} ranks on {len(set(hosts))} hosts: {', '.join(sorted(set(hosts)))}")
