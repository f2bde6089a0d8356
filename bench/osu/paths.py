"""Call paths: :func:`make_path` picks one, and the ``mpi4py`` one lives here.

A call path (the :class:`~bench.osu.callpath.CallPath` interface) runs the timed loop and returns seconds. Two
exist: ``mpi4py`` here (buffer-based ``Send``/``Recv``/``Isend``/``Irecv``/``Allreduce`` on NumPy arrays of
``MPI_CHAR``, OMB's default datatype; buffer specifications built once per size, outside the loop) and ``numba``
(``numba_path.py``: the same loops compiled with ``@njit``, calling the C MPI functions directly). Both implement
``callpath``'s interface and tags; only this module knows both, so neither imports the other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.osu.callpath import TAG, TAG_ACK, TAG_BACK, TAG_DATA, CallPath

__all__ = ["Mpi4pyPath", "make_path"]


def make_path(name: str, comm: Any) -> CallPath:
    if name == "mpi4py":
        return Mpi4pyPath(comm)
    if name == "numba":
        from bench.osu.numba_path import NumbaPath  # numba only when asked for

        return NumbaPath(comm)
    raise ValueError(f"--path: {name!r} is not one of mpi4py, numba")


def _chars(buf: np.ndarray, count: int, MPI: Any) -> list[Any]:
    """mpi4py's message for the first ``count`` bytes of ``buf`` as ``MPI_CHAR``: ``[memoryview, count, CHAR]``.

    The cheapest spelling per call: mpi4py builds three objects and takes a buffer on every Send and Recv
    (``msgbuffer.pxi``), and a bare memoryview with an explicit count and type skips NumPy's buffer export and
    the format-string lookup a ``'c'`` memoryview needs (measured on real messages, 8 B ping-pong: 1.35x C
    against 1.39-1.42x; a ``Send`` to ``MPI_PROC_NULL`` returns before any buffer work, so it cannot rank them).
    """
    return [memoryview(buf), count, MPI.CHAR]


class Mpi4pyPath:
    """mpi4py's buffer interface: what a careful mpi4py program does (no pickling, no per-call allocation)."""

    name = "mpi4py"

    def __init__(self, comm: Any) -> None:
        from mpi4py import MPI

        self.comm, self.MPI = comm, MPI

    def prepare(self, benchmark: str) -> None:
        """Nothing to compile."""

    def pingpong(self, sbuf: np.ndarray, rbuf: np.ndarray, size: int, first: bool, peer: int, iters: int,
                 warmup: int) -> float:
        """OMB's loop, with only the MPI calls inside it: the messages are made once per size (:func:`_chars`),
        the warm-up and timed iterations are two loops and the side (send first or receive first) is chosen
        once, not per iteration."""
        smsg, rmsg = _chars(sbuf, size, self.MPI), _chars(rbuf, size, self.MPI)
        send, recv, wtime, tag = self.comm.Send, self.comm.Recv, self.MPI.Wtime, TAG
        if first:
            for _ in range(warmup):
                send(smsg, peer, tag)
                recv(rmsg, peer, tag)
            t0 = wtime()
            for _ in range(iters):
                send(smsg, peer, tag)
                recv(rmsg, peer, tag)
        else:
            for _ in range(warmup):
                recv(rmsg, peer, tag)
                send(smsg, peer, tag)
            t0 = wtime()
            for _ in range(iters):
                recv(rmsg, peer, tag)
                send(smsg, peer, tag)
        return float(wtime() - t0)

    def bw(self, sbuf: np.ndarray, rbuf: np.ndarray, size: int, sender: bool, peer: int, iters: int, warmup: int,
           window: int) -> float:
        MPI, comm = self.MPI, self.comm
        smsg, rmsg, ack = _chars(sbuf, size, MPI), _chars(rbuf, size, MPI), _chars(rbuf, 1, MPI)
        isend, irecv, waitall, wtime = comm.Isend, comm.Irecv, MPI.Request.Waitall, MPI.Wtime
        reqs: list[Any] = [None] * window
        t0 = 0.0
        for i in range(iters + warmup):
            if i == warmup:
                t0 = wtime()
            if sender:
                for j in range(window):
                    reqs[j] = isend(smsg, peer, TAG_DATA)
                waitall(reqs)
                comm.Recv(ack, peer, TAG_ACK)
            else:
                for j in range(window):
                    reqs[j] = irecv(rmsg, peer, TAG_DATA)
                waitall(reqs)
                comm.Send(ack, peer, TAG_ACK)
        return float(wtime() - t0)

    def bibw(self, sbuf: np.ndarray, rbuf: np.ndarray, size: int, peer: int, iters: int, warmup: int,
             window: int) -> float:
        MPI, comm = self.MPI, self.comm
        smsg, rmsg = _chars(sbuf, size, MPI), _chars(rbuf, size, MPI)
        isend, irecv, waitall, wtime = comm.Isend, comm.Irecv, MPI.Request.Waitall, MPI.Wtime
        # The lower rank sends on TAG_DATA and receives on TAG_BACK; the other the reverse.
        stag, rtag = (TAG_DATA, TAG_BACK) if comm.Get_rank() < peer else (TAG_BACK, TAG_DATA)
        rreqs: list[Any] = [None] * window
        sreqs: list[Any] = [None] * window
        t0 = 0.0
        for i in range(iters + warmup):
            if i == warmup:
                t0 = wtime()
            for j in range(window):
                rreqs[j] = irecv(rmsg, peer, rtag)
            for j in range(window):
                sreqs[j] = isend(smsg, peer, stag)
            waitall(sreqs)
            waitall(rreqs)
        return float(wtime() - t0)

    def allreduce(self, sbuf: np.ndarray, rbuf: np.ndarray, count: int, iters: int, warmup: int) -> float:
        MPI, comm = self.MPI, self.comm
        smsg, rmsg = _chars(sbuf, count, MPI), _chars(rbuf, count, MPI)
        allreduce, barrier, wtime, op = comm.Allreduce, comm.Barrier, MPI.Wtime, MPI.SUM
        total = 0.0
        for i in range(iters + warmup):
            t = wtime()
            allreduce(smsg, rmsg, op)
            if i >= warmup:
                total += wtime() - t
            barrier()
        return total

    def info(self) -> dict[str, Any]:
        import mpi4py

        return {"mpi4py": mpi4py.__version__}
