"""3-D spatial domain decomposition over a periodic Cartesian communicator (mpi4py, Sendrecv on numpy buffers).

Each rank owns the atoms inside its box [lo, hi). Ghosts come in six swaps, LAMMPS-style: for x, y, z in turn,
atoms within r_list of the lower face go to the lower neighbour and those within r_list of the upper face to the
upper one, with +-L added across the periodic boundary; swaps of a later dimension also forward the ghosts of
earlier ones, which fills edges and corners. A dimension with one rank sends to itself: its periodic images. So
one rank and many go through the same code. The swap plan (which atoms, which shift) is fixed between rebuilds;
``halo`` resends only positions every step, and ``reverse`` sends the ghosts' forces back the same way in the
opposite order (Newton's third law across ranks and periodic images, as LAMMPS's reverse communication). A swap
with this rank itself (a dimension of one rank) is a local copy, not an MPI message. ``migrate`` moves owned atoms
that left the box (rebuild steps only). Every subdomain must be at least r_list wide (one hop per swap).
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
    fbuf: np.ndarray     # forces coming back for idx (reverse)
    local: bool          # a swap with this rank itself: copies, no MPI


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
        self.rank = self.cart.Get_rank()
        self.coords = self.cart.Get_coords(self.rank)
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

    def borders(self, pos: np.ndarray, q: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Add ghosts (positions, charges, global ids) to the owned ones; remembers the swap plan for ``halo``."""
        self.swaps = []
        allpos, allq, allid = pos, q, ids
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
                sent = np.column_stack([allpos[idx] + shift, allq[idx], allid[idx]])
                local = dest == self.rank and source == self.rank
                got = sent if local else self._exchange(sent, dest, source, tag)
                self.swaps.append(Swap(dest, source, tag, idx, shift, len(allpos), len(got),
                                       np.empty((len(idx), 3)), np.empty((len(idx), 3)), local))
                allpos = np.concatenate([allpos, got[:, :3]])
                allq = np.concatenate([allq, got[:, 3]])
                allid = np.concatenate([allid, got[:, 4]])
        return np.ascontiguousarray(allpos), allq, allid

    def halo(self, pos: np.ndarray, k: Any) -> None:
        """Every step between rebuilds: refresh ghost positions in place, swap by swap (order matters); ``k`` is
        the kernels module."""
        from mpi4py import MPI

        for s in self.swaps:
            if s.local:
                k.copy_shifted(pos, s.idx, s.shift, s.first)
                continue
            k.gather_shifted(pos, s.idx, s.shift, s.buf)
            self.cart.Sendrecv([s.buf, MPI.DOUBLE], s.dest, s.tag, [pos[s.first:s.first + s.count], MPI.DOUBLE],
                               s.source, s.tag)

    def reverse(self, f: np.ndarray, k: Any) -> None:
        """Every step after the forces: add each ghost's force to the atom it is a copy of, swaps in reverse order
        (a ghost forwarded by a later swap passes its force on to the earlier one)."""
        from mpi4py import MPI

        for s in reversed(self.swaps):
            mine = f[s.first:s.first + s.count]
            if s.local:
                k.scatter_add(f, s.idx, mine)
                continue
            self.cart.Sendrecv([np.ascontiguousarray(mine), MPI.DOUBLE], s.source, s.tag + 1000,
                               [s.fbuf, MPI.DOUBLE], s.dest, s.tag + 1000)
            k.scatter_add(f, s.idx, s.fbuf)
