"""The registered benchmarks: OSU 7.4's methodology, with the timed loops delegated to a call path.

Each function runs on every rank and returns rows; only rank 0's rows carry the figure OSU prints (for latency
and bandwidth the other rank's timing is of the mirror loop; for allreduce every rank gets the same reduced
statistics). After each size the data that arrived is checked (outside the timing), so a call path that moves no
bytes fails instead of reporting a fast figure.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np

from bench.osu.callpath import CallPath
from bench.osu.paths import make_path
from bench.osu.suite import BENCHMARKS, Options, Result, Row, Spec, benchmark

MiB = 1 << 20
SENT, UNSENT = ord("a"), ord("b")  # send buffers hold 'a', receive buffers start as 'b' (as OSU fills them)


class UsageError(ValueError):
    """A request this benchmark cannot run (wrong number of ranks, bad option); every rank raises it alike."""


def _arrived(buf: np.ndarray, size: int, what: str) -> None:
    if size and not np.all(buf[:size] == SENT):
        raise RuntimeError(f"{what}: {size} B message did not arrive intact")


@benchmark("latency", title="Latency Test", column="Avg Latency(us)", unit="us", min_size=0, max_size=4 * MiB,
           small=(10000, 100), large=(1000, 10), ranks=2)
def latency(comm: Any, path: CallPath, spec: Spec, opts: Options) -> list[Row]:
    """Ping-pong: rank 0 sends then receives, rank 1 the reverse; half the round trip, in microseconds."""
    rank, sizes = comm.Get_rank(), spec.sizes(opts)
    buf = np.full(max(sizes, default=1) or 1, SENT if rank == 0 else UNSENT, np.uint8)
    path.prepare(spec.name)
    rows = []
    for size in sizes:
        iters, warm = spec.counts(size, opts)
        if rank == 1:
            buf[:size] = UNSENT
        comm.Barrier()
        seconds = path.pingpong(buf, size, rank == 0, 1 - rank, iters, warm)
        _arrived(buf, size, "latency")
        rows.append(Row(size, seconds * 1e6 / (2 * iters), iters, warm))
    return rows


def _bandwidth(comm: Any, path: CallPath, spec: Spec, opts: Options, both_ways: bool) -> list[Row]:
    rank, sizes = comm.Get_rank(), spec.sizes(opts)
    n = max(sizes, default=1) or 1
    sbuf, rbuf = np.full(n, SENT, np.uint8), np.full(n, UNSENT, np.uint8)
    path.prepare(spec.name)
    rows = []
    for size in sizes:
        iters, warm = spec.counts(size, opts)
        rbuf[:size] = UNSENT
        comm.Barrier()
        if both_ways:
            seconds = path.bibw(sbuf, rbuf, size, 1 - rank, iters, warm, opts.window)
        else:
            seconds = path.bw(sbuf, rbuf, size, rank == 0, 1 - rank, iters, warm, opts.window)
        if both_ways or rank == 1:
            _arrived(rbuf, size, spec.name)
        moved = size / 1e6 * iters * opts.window * (2 if both_ways else 1)
        rows.append(Row(size, moved / seconds, iters, warm))
    return rows


@benchmark("bw", title="Bandwidth Test", column="Bandwidth (MB/s)", unit="MB/s", min_size=1, max_size=4 * MiB,
           small=(100, 10), large=(20, 2), ranks=2)
def bw(comm: Any, path: CallPath, spec: Spec, opts: Options) -> list[Row]:
    """Rank 0 posts a window of Isends, waits, and waits for rank 1's 1-byte ack; MB/s (10^6 bytes)."""
    return _bandwidth(comm, path, spec, opts, both_ways=False)


@benchmark("bibw", title="Bi-Directional Bandwidth Test", column="Bandwidth (MB/s)", unit="MB/s", min_size=1,
           max_size=4 * MiB, small=(100, 10), large=(20, 2), ranks=2)
def bibw(comm: Any, path: CallPath, spec: Spec, opts: Options) -> list[Row]:
    """Both ranks post a window of Irecvs and a window of Isends at once; both directions counted."""
    return _bandwidth(comm, path, spec, opts, both_ways=True)


@benchmark("allreduce", title="Allreduce Latency Test", column="Avg Latency(us)", unit="us", min_size=4,
           max_size=1 * MiB, small=(1000, 100), large=(100, 10))
def allreduce(comm: Any, path: CallPath, spec: Spec, opts: Options) -> list[Row]:
    """MPI_Allreduce(SUM) of float32 (size // 4 elements); only the call is timed, a barrier between calls;
    each rank's average, then the mean, min and max over ranks."""
    from mpi4py import MPI

    sizes, nranks = spec.sizes(opts), comm.Get_size()
    n = max(sizes, default=4) // 4
    sbuf, rbuf = np.ones(n, np.float32), np.zeros(n, np.float32)
    path.prepare(spec.name)
    rows = []
    for size in sizes:
        iters, warm = spec.counts(size, opts)
        count = size // 4
        rbuf[:count] = 0
        comm.Barrier()
        us = path.allreduce(sbuf, rbuf, count, iters, warm) * 1e6 / iters
        if not np.all(rbuf[:count] == nranks):
            raise RuntimeError(f"allreduce: {size} B result is not the sum over {nranks} ranks")
        lo, hi, total = (comm.allreduce(us, op) for op in (MPI.MIN, MPI.MAX, MPI.SUM))
        rows.append(Row(size, total / nranks, iters, warm, lo, hi))
    return rows


def environment(comm: Any, path: CallPath) -> dict[str, Any]:
    """Where the figures came from: MPI library, libfabric provider, nodes and ranks (a collective call)."""
    from mpi4py import MPI

    hosts = comm.allgather(MPI.Get_processor_name())
    library = " ".join(MPI.Get_library_version().splitlines()[0].split())
    return {"mpi_library": library, "fi_provider": os.environ.get("FI_PROVIDER"),
            "netmod": os.environ.get("MPIR_CVAR_CH4_NETMOD"), "nodes": len(set(hosts)), "ranks": comm.Get_size(),
            "hosts": sorted(set(hosts)), "mnp_job_id": os.environ.get("MNP_JOB_ID"),
            "python": platform.python_version(), **path.info()}


def run(name: str, opts: Options, comm: Any = None) -> Result:
    """Run benchmark ``name`` on ``comm`` (default COMM_WORLD) through ``opts.path``; every rank calls this."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD if comm is None else comm
    spec = BENCHMARKS[name]
    size = comm.Get_size()
    if spec.ranks is not None and size != spec.ranks:
        raise UsageError(f"{name} needs exactly {spec.ranks} ranks, this job has {size}")
    if size < 2:
        raise UsageError(f"{name} needs at least 2 ranks, this job has {size}")
    if opts.window < 1 or (opts.iterations is not None and opts.iterations < 1) or (opts.warmup or 0) < 0:
        raise UsageError("-W and -i must be at least 1, -x at least 0")
    path = make_path(opts.path, comm)
    rows = spec.run(comm, path, spec, opts)
    return Result(name, path.name, spec.unit, rows, environment(comm, path))
