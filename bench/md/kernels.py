"""The hot loops, compiled with numba ``@njit`` (cached on disk). Imported only when a run starts.

Atoms 0..nlocal-1 are owned; the rest are ghosts (periodic images or neighbours' atoms, already shifted, so no
minimum image is needed). The Verlet list is half for owned pairs (j > i) and holds every owned-ghost pair from the
owned side: a ghost pair's force goes to the owned atom only and its energy counts one half, the other half being
counted by the rank (or image) that owns the partner. No reverse force communication is needed.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def bin_atoms(pos, n, lo, ncell, inv_cell):  # type: ignore[no-untyped-def]
    """Cell list: cell index per atom, start offsets per cell, atoms sorted by cell."""
    nc = ncell[0] * ncell[1] * ncell[2]
    cidx = np.empty(n, np.int64)
    start = np.zeros(nc + 1, np.int64)
    for i in range(n):
        c = 0
        for d in range(3):
            k = int((pos[i, d] - lo[d]) * inv_cell[d])
            k = min(max(k, 0), ncell[d] - 1)
            c = c * ncell[d] + k
        cidx[i] = c
        start[c + 1] += 1
    for c in range(nc):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    atoms = np.empty(n, np.int64)
    for i in range(n):
        atoms[fill[cidx[i]]] = i
        fill[cidx[i]] += 1
    return cidx, start, atoms


@njit(cache=True)
def build_list(pos, nlocal, ntotal, lo, ncell, inv_cell, rlist2, cap):  # type: ignore[no-untyped-def]
    """Buffered Verlet list (CSR) of owned atoms; returns (offsets, neighbours, count), count -1 on overflow."""
    cidx, start, atoms = bin_atoms(pos, ntotal, lo, ncell, inv_cell)
    offs = np.empty(nlocal + 1, np.int64)
    nbr = np.empty(cap, np.int32)
    k = 0
    for i in range(nlocal):
        offs[i] = k
        c = cidx[i]
        cz = c % ncell[2]
        cy = (c // ncell[2]) % ncell[1]
        cx = c // (ncell[2] * ncell[1])
        xi, yi, zi = pos[i, 0], pos[i, 1], pos[i, 2]
        for ax in range(max(cx - 1, 0), min(cx + 2, ncell[0])):
            for ay in range(max(cy - 1, 0), min(cy + 2, ncell[1])):
                for az in range(max(cz - 1, 0), min(cz + 2, ncell[2])):
                    cc = (ax * ncell[1] + ay) * ncell[2] + az
                    for s in range(start[cc], start[cc + 1]):
                        j = atoms[s]
                        if j < nlocal and j <= i:
                            continue
                        dx, dy, dz = xi - pos[j, 0], yi - pos[j, 1], zi - pos[j, 2]
                        if dx * dx + dy * dy + dz * dz < rlist2:
                            if k >= cap:
                                return offs, nbr, -1
                            nbr[k] = j
                            k += 1
    offs[nlocal] = k
    return offs, nbr, k


@njit(cache=True)
def forces(pos, q, nlocal, offs, nbr, f, rc2, use_rf, k_rf, c_rf, inv_eps_r):  # type: ignore[no-untyped-def]
    """LJ (+ reaction field) forces on owned atoms. Returns (E_LJ unshifted, pairs inside r_c, E_RF pairs),
    ghost pairs weighted one half."""
    for i in range(nlocal):
        f[i, 0] = 0.0
        f[i, 1] = 0.0
        f[i, 2] = 0.0
    e_lj, npair, e_rf = 0.0, 0.0, 0.0
    for i in range(nlocal):
        xi, yi, zi = pos[i, 0], pos[i, 1], pos[i, 2]
        fx, fy, fz = 0.0, 0.0, 0.0
        for k in range(offs[i], offs[i + 1]):
            j = nbr[k]
            dx, dy, dz = xi - pos[j, 0], yi - pos[j, 1], zi - pos[j, 2]
            r2 = dx * dx + dy * dy + dz * dz
            if r2 < rc2:
                w = 1.0 if j < nlocal else 0.5
                ir2 = 1.0 / r2
                ir6 = ir2 * ir2 * ir2
                fs = 24.0 * ir6 * (2.0 * ir6 - 1.0) * ir2
                e_lj += w * 4.0 * ir6 * (ir6 - 1.0)
                npair += w
                if use_rf:
                    qq = q[i] * q[j] * inv_eps_r
                    if qq != 0.0:
                        ir = np.sqrt(ir2)
                        e_rf += w * qq * (ir + k_rf * r2 - c_rf)
                        fs += qq * (ir * ir2 - 2.0 * k_rf)
                fx += fs * dx
                fy += fs * dy
                fz += fs * dz
                if j < nlocal:
                    f[j, 0] -= fs * dx
                    f[j, 1] -= fs * dy
                    f[j, 2] -= fs * dz
        f[i, 0] += fx
        f[i, 1] += fy
        f[i, 2] += fz
    return e_lj, npair, e_rf


@njit(cache=True)
def kick(v, f, nlocal, h):  # type: ignore[no-untyped-def]
    """v += h f (mass 1)."""
    for i in range(nlocal):
        for d in range(3):
            v[i, d] += h * f[i, d]


@njit(cache=True)
def drift(x, v, nlocal, dt):  # type: ignore[no-untyped-def]
    for i in range(nlocal):
        for d in range(3):
            x[i, d] += dt * v[i, d]


@njit(cache=True)
def sum_v2(v, nlocal):  # type: ignore[no-untyped-def]
    s = 0.0
    for i in range(nlocal):
        s += v[i, 0] * v[i, 0] + v[i, 1] * v[i, 1] + v[i, 2] * v[i, 2]
    return s


@njit(cache=True)
def gather_shifted(pos, idx, shift, out):  # type: ignore[no-untyped-def]
    """out[k] = pos[idx[k]] + shift: one halo message."""
    for k in range(idx.shape[0]):
        i = idx[k]
        for d in range(3):
            out[k, d] = pos[i, d] + shift[d]
