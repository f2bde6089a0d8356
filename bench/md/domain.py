"""3-D spatial domain decomposition over a periodic Cartesian communicator (mpi4py, Sendrecv on numpy buffers).

Each rank owns the atoms inside its box [lo, hi). Ghosts come in six swaps, LAMMPS-style: for x, y, z in turn,
atoms within r_list of the lower face go to the lower neighbour and those within r_list of the upper face to the
upper one, with +-L added across the periodic boundary; swaps of a later dimension also forward the ghosts of
earlier ones, which fills edges and corners. A dimension with one rank sends to itself: its periodic images. So
one rank and many go through the same code. The swap plan (which atoms, which shift) is fixed between rebuilds;
``halo`` resends only positions every step. ``migrate`` moves owned atoms that left the box (rebuild steps only).
Every subdomain must be at least r_list wide (one hop per swap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.md.system import Params


class UsageError(ValueError):
    """Bad options for this rank count; raised alike on every rank before any communication."""


@dataclass
class Swap:
    dest: int
    source: int
    tag: int
    idx: np.ndarray      # which local atoms (owned or earlier ghosts) go
    shift: np.ndarray    # added to their positions
    first: int           # where the received ghosts start
    count: int
    buf: np.ndarray      # send buffer


def grid(size: int, p: Params) -> list[int]:
    from mpi4py import MPI

    dims = list(MPI.Compute_dims(size, 3)) if p.decomp == "3d" else [size, 1, 1]
    for d, n in enumerate(dims):
        if p.box / n < p.rlist:
            raise UsageError(f"{size} ranks as {dims[0]}x{dims[1]}x{dims[2]}: subdomains {p.box / n:.3f} wide in "
                             f"{'xyz'[d]}, less than r_c + skin = {p.rlist}; use more --cells or fewer ranks")
    return dims


class Domain:
    def __init__(self, comm: Any, p: Params) -> None:
        self.p, self.L, self.rlist = p, p.box, p.rlist
        self.dims = grid(comm.Get_size(), p)
        self.cart = comm.Create_cart(self.dims, periods=[True] * 3, reorder=False)
        self.coords = self.cart.Get_coords(self.cart.Get_rank())
        self.lo = np.array([c * self.L / n for c, n in zip(self.coords, self.dims)])
        self.hi = np.array([(c + 1) * self.L / n for c, n in zip(self.coords, self.dims)])
        self.lower_upper = [self.cart.Shift(d, 1) for d in range(3)]  # (source of +1 shift, dest) = (lower, upper)
        self.swaps: list[Swap] = []

    def owner(self, x: np.ndarray, d: int) -> np.ndarray:
        return np.minimum((x * (self.dims[d] / self.L)).astype(np.int64), self.dims[d] - 1)

    def mine(self, pos: np.ndarray) -> np.ndarray:
        """Mask of the atoms (positions inside [0, L)) this rank owns."""
        keep = np.ones(len(pos), bool)
        for d in range(3):
            keep &= self.owner(pos[:, d], d) == self.coords[d]
        return keep

    def _exchange(self, data: np.ndarray, dest: int, source: int, tag: int) -> np.ndarray:
        from mpi4py import MPI

        n = np.array([len(data)], np.int64)
        m = np.zeros(1, np.int64)
        self.cart.Sendrecv([n, MPI.INT64_T], dest, tag, [m, MPI.INT64_T], source, tag)
        out = np.empty((int(m[0]),) + data.shape[1:], data.dtype)
        self.cart.Sendrecv([np.ascontiguousarray(data), MPI.DOUBLE], dest, tag + 1, [out, MPI.DOUBLE], source,
                           tag + 1)
        return out

    def migrate(self, state: np.ndarray) -> np.ndarray:
        """Owned atoms as rows (x, y, z, vx, vy, vz, q, id): wrap into the box, send leavers to neighbours."""
        for d in range(3):
            state[:, d] = np.mod(state[:, d], self.L)
            if self.dims[d] == 1:
                continue
            c, me, n = self.owner(state[:, d], d), self.coords[d], self.dims[d]
            down, up = c == (me - 1) % n, (c != me) & (c != (me - 1) % n)
            if np.any(up & (c != (me + 1) % n)):
                raise RuntimeError("an atom moved more than one subdomain between rebuilds (lower nstlist)")
            lower, upper = self.lower_upper[d]
            got_down = self._exchange(state[down], lower, upper, 10 + 4 * d)
            got_up = self._exchange(state[up], upper, lower, 12 + 4 * d)
            state = np.concatenate([state[c == me], got_down, got_up])
        return state

    def borders(self, pos: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add ghosts to the owned ``pos``/``q``; remembers the swap plan for ``halo``."""
        self.swaps = []
        allpos, allq = pos, q
        for d in range(3):
            nfirst = len(allpos)
            lower, upper = self.lower_upper[d]
            for to_lower in (True, False):
                x = allpos[:nfirst, d]
                shift = np.zeros(3)
                if to_lower:
                    idx = np.nonzero(x < self.lo[d] + self.rlist)[0]
                    dest, source = lower, upper
                    shift[d] = self.L if self.coords[d] == 0 else 0.0
                else:
                    idx = np.nonzero(x >= self.hi[d] - self.rlist)[0]
                    dest, source = upper, lower
                    shift[d] = -self.L if self.coords[d] == self.dims[d] - 1 else 0.0
                tag = 100 + 2 * (2 * d + (0 if to_lower else 1))
                sent = np.column_stack([allpos[idx] + shift, allq[idx]])
                got = self._exchange(sent, dest, source, tag)
                self.swaps.append(Swap(dest, source, tag, idx, shift, len(allpos), len(got),
                                       np.empty((len(idx), 3))))
                allpos = np.concatenate([allpos, got[:, :3]])
                allq = np.concatenate([allq, got[:, 3]])
        return np.ascontiguousarray(allpos), allq

    def halo(self, pos: np.ndarray, gather: Any) -> None:
        """Every step between rebuilds: refresh ghost positions in place, swap by swap (order matters)."""
        from mpi4py import MPI

        for s in self.swaps:
            gather(pos, s.idx, s.shift, s.buf)
            self.cart.Sendrecv([s.buf, MPI.DOUBLE], s.dest, s.tag, [pos[s.first:s.first + s.count], MPI.DOUBLE],
                               s.source, s.tag)
