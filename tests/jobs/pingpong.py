"""Test job: 2-rank pingpong; rank 0 prints the median half round trip (us) of several timed batches."""

import statistics

from mpi4py import MPI

comm = MPI.COMM_WORLD
assert comm.Get_size() == 2, "pingpong needs exactly 2 ranks"
buf = bytearray(8)
other = 1 - comm.Get_rank()
samples = []
for batch in range(7):
    n = 200 if batch == 0 else 1000
    comm.Barrier()
    t0 = MPI.Wtime()
    for _ in range(n):
        if comm.Get_rank() == 0:
            comm.Send([buf, MPI.BYTE], other)
            comm.Recv([buf, MPI.BYTE], other)
        else:
            comm.Recv([buf, MPI.BYTE], other)
            comm.Send([buf, MPI.BYTE], other)
    if batch:  # the first batch warms up
        samples.append((MPI.Wtime() - t0) / (2 * n) * 1e6)
if comm.Get_rank() == 0:
    print(f"LATENCY_US {statistics.median(samples):.3f}")
