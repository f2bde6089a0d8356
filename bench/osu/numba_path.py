"""The ``numba`` call path: the timed loops compiled with ``@njit``, calling the C MPI library directly.

How: mpi4py has already loaded the MPI library; we find that very file in ``/proc/self/maps``, open it again with
``ctypes.CDLL`` (the same handle, so the same MPI state), and declare the few functions we need with ``argtypes``.
numba compiles calls to such ctypes functions into direct C calls. Handles come from mpi4py
(``MPI._handleof(MPI.COMM_WORLD)`` and so on): plain ``int`` values in the MPICH ABI (``MPI._sizeof(MPI.Comm) ==
4``), pointer-sized otherwise, and the ctypes argument type is chosen from that size. Pointers (buffers, requests,
statuses) are passed as ``ssize_t`` addresses from ``array.ctypes.data``, which numba supports in nopython mode.

Before the library is trusted, ``MPI_Comm_size`` and ``MPI_Comm_rank`` called through it must agree with mpi4py:
that checks both the library and the handle ABI. Kernels are compiled before the first barrier (``prepare``) by
calling them with zero iterations, and the compile time is reported (``jit_s``), never timed.
"""

from __future__ import annotations

import ctypes
import os
import time
from types import SimpleNamespace
from typing import Any

import numpy as np

from bench.osu.callpath import TAG, TAG_ACK, TAG_BACK, TAG_DATA


def mapped_mpi_libraries() -> list[str]:
    """Files named libmpi*.so* mapped into this process, in map order (Linux)."""
    found: list[str] = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split(maxsplit=5)
            path = parts[5].strip() if len(parts) == 6 else ""
            base = os.path.basename(path)
            if base.startswith("libmpi") and ".so" in base and path not in found:
                found.append(path)
    return found


def bind(MPI: Any, comm: Any) -> SimpleNamespace:
    """ctypes declarations of the MPI functions the kernels call, from the library mpi4py loaded."""
    handle = ctypes.c_int if MPI._sizeof(MPI.Comm) == 4 else ctypes.c_ssize_t
    ptr, i32 = ctypes.c_ssize_t, ctypes.c_int
    signatures: dict[str, tuple[list[Any], Any]] = {
        "MPI_Send": ([ptr, i32, handle, i32, i32, handle], i32),
        "MPI_Recv": ([ptr, i32, handle, i32, i32, handle, ptr], i32),
        "MPI_Isend": ([ptr, i32, handle, i32, i32, handle, ptr], i32),
        "MPI_Irecv": ([ptr, i32, handle, i32, i32, handle, ptr], i32),
        "MPI_Waitall": ([i32, ptr, ptr], i32),
        "MPI_Allreduce": ([ptr, ptr, i32, handle, handle, handle], i32),
        "MPI_Barrier": ([handle], i32),
        "MPI_Comm_size": ([handle, ptr], i32),
        "MPI_Comm_rank": ([handle, ptr], i32),
        "MPI_Wtime": ([], ctypes.c_double),
    }
    candidates = mapped_mpi_libraries()
    tried = []
    for path in candidates:
        lib = ctypes.CDLL(path)
        if not hasattr(lib, "MPI_Send"):
            continue
        fns = {}
        for name, (args, res) in signatures.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, res
            fns[name[4:].lower()] = fn
        out = np.zeros(2, np.int32)
        c = MPI._handleof(comm)
        fns["comm_size"](c, out.ctypes.data)
        fns["comm_rank"](c, out.ctypes.data + 4)
        if (int(out[0]), int(out[1])) == (comm.Get_size(), comm.Get_rank()):
            return SimpleNamespace(path=path, comm=c, char=MPI._handleof(MPI.CHAR),
                                   sum=MPI._handleof(MPI.SUM), request_size=MPI._sizeof(MPI.Request),
                                   status_size=MPI._sizeof(MPI.Status), **fns)
        tried.append(f"{path}: size/rank {out.tolist()} != {comm.Get_size()}/{comm.Get_rank()}")
    raise RuntimeError("numba path: no MPI library in this process answers like mpi4py's "
                       f"(mapped: {candidates or 'none'}; {'; '.join(tried) or 'none exports MPI_Send'})")


def build_kernels(api: SimpleNamespace) -> SimpleNamespace:
    """The four timed loops as numba dispatchers (compiled on first call) closing over the ctypes functions."""
    from numba import njit

    send, recv, isend, irecv = api.send, api.recv, api.isend, api.irecv
    waitall, allreduce_c, barrier, wtime = api.waitall, api.allreduce, api.barrier, api.wtime

    @njit
    def pingpong(sbuf, rbuf, size, first, peer, iters, warmup, comm, dtype, status):  # type: ignore[no-untyped-def]
        sp, rp, st = sbuf.ctypes.data, rbuf.ctypes.data, status.ctypes.data
        err, t0 = 0, 0.0
        for i in range(iters + warmup):
            if i == warmup:
                t0 = wtime()
            if first:
                err |= send(sp, size, dtype, peer, TAG, comm)
                err |= recv(rp, size, dtype, peer, TAG, comm, st)
            else:
                err |= recv(rp, size, dtype, peer, TAG, comm, st)
                err |= send(sp, size, dtype, peer, TAG, comm)
        return wtime() - t0, err

    @njit
    def bw(sbuf, rbuf, size, sender, peer, iters, warmup, window, reqs, statuses, comm,  # type: ignore[no-untyped-def]
           dtype):
        sp, rp, rq, st, step = sbuf.ctypes.data, rbuf.ctypes.data, reqs.ctypes.data, statuses.ctypes.data, \
            reqs.itemsize
        err, t0 = 0, 0.0
        for i in range(iters + warmup):
            if i == warmup:
                t0 = wtime()
            if sender:
                for j in range(window):
                    err |= isend(sp, size, dtype, peer, TAG_DATA, comm, rq + j * step)
                err |= waitall(window, rq, st)
                err |= recv(rp, 1, dtype, peer, TAG_ACK, comm, st)
            else:
                for j in range(window):
                    err |= irecv(rp, size, dtype, peer, TAG_DATA, comm, rq + j * step)
                err |= waitall(window, rq, st)
                err |= send(rp, 1, dtype, peer, TAG_ACK, comm)
        return wtime() - t0, err

    @njit
    def bibw(sbuf, rbuf, size, peer, stag, rtag, iters, warmup, window, reqs, statuses,  # type: ignore[no-untyped-def]
             comm, dtype):
        sp, rp, rq, st, step = sbuf.ctypes.data, rbuf.ctypes.data, reqs.ctypes.data, statuses.ctypes.data, \
            reqs.itemsize
        sq = rq + window * step  # receives in reqs[:window], sends in reqs[window:]
        err, t0 = 0, 0.0
        for i in range(iters + warmup):
            if i == warmup:
                t0 = wtime()
            for j in range(window):
                err |= irecv(rp, size, dtype, peer, rtag, comm, rq + j * step)
            for j in range(window):
                err |= isend(sp, size, dtype, peer, stag, comm, sq + j * step)
            err |= waitall(window, sq, st)
            err |= waitall(window, rq, st)
        return wtime() - t0, err

    @njit
    def allreduce(sbuf, rbuf, count, iters, warmup, comm, dtype, op):  # type: ignore[no-untyped-def]
        sp, rp = sbuf.ctypes.data, rbuf.ctypes.data
        err, total = 0, 0.0
        for i in range(iters + warmup):
            t = wtime()
            err |= allreduce_c(sp, rp, count, dtype, op, comm)
            if i >= warmup:
                total += wtime() - t
            err |= barrier(comm)
        return total, err

    return SimpleNamespace(pingpong=pingpong, bw=bw, bibw=bibw, allreduce=allreduce)


class NumbaPath:
    """``@njit`` loops over ctypes MPI calls: what a timing loop costs without the Python interpreter in it."""

    name = "numba"

    def __init__(self, comm: Any) -> None:
        from mpi4py import MPI

        self.comm = comm
        self.api = bind(MPI, comm)
        self.k = build_kernels(self.api)
        self.jit_s = 0.0
        self.status = np.zeros(self.api.status_size, np.uint8)
        self._reqs = np.zeros(0, np.int32)
        self._statuses = np.zeros(0, np.uint8)

    def _arrays(self, nreq: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self._reqs) < nreq:
            self._reqs = np.zeros(nreq, np.int32 if self.api.request_size == 4 else np.int64)
            self._statuses = np.zeros(nreq * self.api.status_size, np.uint8)
        return self._reqs, self._statuses

    @staticmethod
    def _check(what: str, out: tuple[float, int]) -> float:
        seconds, err = out
        if err:
            raise RuntimeError(f"numba path: an MPI call in the {what} loop returned error bits {err:#x}")
        return float(seconds)

    def prepare(self, benchmark: str) -> None:
        """Compile the kernel ``benchmark`` uses (zero iterations: no message moves), before any timing."""
        t0 = time.perf_counter()
        one = np.zeros(8, np.uint8)
        if benchmark == "latency":
            self.pingpong(one, one, 0, True, 0, 0, 0)
        elif benchmark == "bw":
            self.bw(one, one, 0, True, 0, 0, 0, 1)
        elif benchmark == "bibw":
            self.bibw(one, one, 0, 0, 0, 0, 1)
        elif benchmark == "allreduce":
            self.allreduce(one, one, 0, 0, 0)
        self.jit_s += time.perf_counter() - t0

    def pingpong(self, sbuf: np.ndarray, rbuf: np.ndarray, size: int, first: bool, peer: int, iters: int,
                 warmup: int) -> float:
        a = self.api
        return self._check("ping-pong", self.k.pingpong(sbuf, rbuf, size, first, peer, iters, warmup, a.comm, a.char,
                                                        self.status))

    def bw(self, sbuf: np.ndarray, rbuf: np.ndarray, size: int, sender: bool, peer: int, iters: int, warmup: int,
           window: int) -> float:
        reqs, statuses = self._arrays(window)
        return self._check("bw", self.k.bw(sbuf, rbuf, size, sender, peer, iters, warmup, window, reqs, statuses,
                                           self.api.comm, self.api.char))

    def bibw(self, sbuf: np.ndarray, rbuf: np.ndarray, size: int, peer: int, iters: int, warmup: int,
             window: int) -> float:
        reqs, statuses = self._arrays(2 * window)
        stag, rtag = (TAG_DATA, TAG_BACK) if self.comm.Get_rank() < peer else (TAG_BACK, TAG_DATA)
        return self._check("bibw", self.k.bibw(sbuf, rbuf, size, peer, stag, rtag, iters, warmup, window, reqs,
                                               statuses, self.api.comm, self.api.char))

    def allreduce(self, sbuf: np.ndarray, rbuf: np.ndarray, count: int, iters: int, warmup: int) -> float:
        a = self.api
        return self._check("allreduce", self.k.allreduce(sbuf, rbuf, count, iters, warmup, a.comm, a.char, a.sum))

    def info(self) -> dict[str, Any]:
        import mpi4py
        import numba

        return {"mpi4py": mpi4py.__version__, "numba": numba.__version__, "libmpi": self.api.path,
                "jit_s": round(self.jit_s, 3)}
