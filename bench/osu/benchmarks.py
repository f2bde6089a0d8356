"""The registered benchmarks: OSU 7.4's methodology, with the timed loops delegated to a call path.

Each function runs on every rank and returns rows; only rank 0's rows carry the figure OSU prints (for latency
and bandwidth the other rank's timing is of the mirror loop; for allreduce every rank gets the same reduced
statistics). Buffers are OMB's (:mod:`bench.osu.buffers`): page-aligned, separate for sending and receiving,
refilled before each size. After each size the data that arrived is checked (outside the timing), so a call path
that moves no bytes fails instead of reporting a fast figure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bench.osu.buffers import SENT, UNSENT, page_aligned
from bench.osu.callpath import CallPath
from bench.osu.facts import environment
from bench.osu.paths import make_path
from bench.osu.suite import BENCHMARKS, Options, Result, Row, Spec, benchmark

Progress = Callable[[int, int, int], None]  # (sizes done, sizes, the size just done)


class UsageError(ValueError):
    """A request this benchmark cannot run (wrong number of ranks, bad option); every rank raises it alike."""


def _arrived(buf: np.ndarray, size: int, what: str, value: int = SENT) -> None:
    if size and not np.all(buf[:size] == value):
        raise RuntimeError(f"{what}: {size} B message did not arrive intact")


def _fill(sbuf: np.ndarray, rbuf: np.ndarray, size: int) -> None:
    """OMB's set_buffer_pt2pt before each size: send buffer 'a', receive buffer 'b' (touched, not timed)."""
    sbuf[:size] = SENT
    rbuf[:size] = UNSENT


@benchmark("latency")
def latency(comm: Any, path: CallPath, spec: Spec, opts: Options, progress: Progress) -> list[Row]:
    """Ping-pong: rank 0 sends then receives, rank 1 the reverse; half the round trip, in microseconds."""
    rank, sizes = comm.Get_rank(), spec.sizes(opts)
    n = max(sizes, default=1)
    sbuf, rbuf = page_aligned(n), page_aligned(n)
    path.prepare(spec.name)
    rows = []
    for i, size in enumerate(sizes):
        iters, warm = spec.counts(size, opts)
        _fill(sbuf, rbuf, size)
        comm.Barrier()
        seconds = path.pingpong(sbuf, rbuf, size, rank == 0, 1 - rank, iters, warm)
        _arrived(rbuf, size, "latency")
        rows.append(Row(size, seconds * 1e6 / (2 * iters), iters, warm))
        progress(i + 1, len(sizes), size)
    return rows


def _bandwidth(comm: Any, path: CallPath, spec: Spec, opts: Options, progress: Progress,
               both_ways: bool) -> list[Row]:
    rank, sizes = comm.Get_rank(), spec.sizes(opts)
    n = max(sizes, default=1)
    sbuf, rbuf = page_aligned(n), page_aligned(n)
    path.prepare(spec.name)
    rows = []
    for i, size in enumerate(sizes):
        iters, warm = spec.counts(size, opts)
        _fill(sbuf, rbuf, size)
        comm.Barrier()
        if both_ways:
            seconds = path.bibw(sbuf, rbuf, size, 1 - rank, iters, warm, opts.window)
        else:
            seconds = path.bw(sbuf, rbuf, size, rank == 0, 1 - rank, iters, warm, opts.window)
        if both_ways or rank == 1:
            _arrived(rbuf, size, spec.name)
        moved = size / 1e6 * iters * opts.window * (2 if both_ways else 1)
        rows.append(Row(size, moved / seconds, iters, warm))
        progress(i + 1, len(sizes), size)
    return rows


@benchmark("bw")
def bw(comm: Any, path: CallPath, spec: Spec, opts: Options, progress: Progress) -> list[Row]:
    """Rank 0 posts a window of Isends, waits, and waits for rank 1's 1-byte ack; MB/s (10^6 bytes)."""
    return _bandwidth(comm, path, spec, opts, progress, both_ways=False)


@benchmark("bibw")
def bibw(comm: Any, path: CallPath, spec: Spec, opts: Options, progress: Progress) -> list[Row]:
    """Both ranks post a window of Irecvs and a window of Isends at once; both directions counted."""
    return _bandwidth(comm, path, spec, opts, progress, both_ways=True)


@benchmark("allreduce")
def allreduce(comm: Any, path: CallPath, spec: Spec, opts: Options, progress: Progress) -> list[Row]:
    """MPI_Allreduce(SUM) of ``size`` MPI_CHARs, as OMB 7.4; only the call is timed, a barrier between calls;
    each rank's average, then the mean, min and max over ranks."""
    from mpi4py import MPI

    sizes, nranks = spec.sizes(opts), comm.Get_size()
    n = max(sizes, default=1)
    sbuf, rbuf = page_aligned(n), page_aligned(n)
    sbuf[:] = 1
    path.prepare(spec.name)
    rows = []
    for i, size in enumerate(sizes):
        iters, warm = spec.counts(size, opts)
        rbuf[:size] = 0
        comm.Barrier()
        us = path.allreduce(sbuf, rbuf, size, iters, warm) * 1e6 / iters
        _arrived(rbuf, size, f"allreduce over {nranks} ranks", nranks % 256)
        lo, hi, total = (comm.allreduce(us, op) for op in (MPI.MIN, MPI.MAX, MPI.SUM))
        rows.append(Row(size, total / nranks, iters, warm, lo, hi))
        progress(i + 1, len(sizes), size)
    return rows


def _quiet(_done: int, _total: int, _size: int) -> None:
    pass


def run(name: str, opts: Options, comm: Any = None, progress: Progress = _quiet) -> Result:
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
    rows = spec.run(comm, path, spec, opts, progress)
    return Result(name, path.name, spec.unit, rows, environment(comm, path))
