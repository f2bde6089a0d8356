"""The hot loops, compiled with numba ``@njit`` (cached on disk). Imported only when a run starts.

Atoms 0..nlocal-1 are owned, sorted by cell of the list grid (memory locality: a cell's owned atoms are one
contiguous range); the rest are ghosts (periodic images or neighbours' atoms, already shifted, so no minimum
image is needed). The Verlet list is half and Newton's third law holds for every pair, as LAMMPS's ``newton on``:
an owned pair (i, j) is stored once, by the lower index, and an owned-ghost pair by the atom with the lower global
id (its mirror on the rank that owns the partner, or the other periodic image, has the ids the other way round, so
every pair in the system is computed exactly once). The ghosts' forces go back to their owners (``scatter_add``,
the reverse of the halo), and every stored pair counts its whole energy.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def cells_of(pos, n, lo, ncell, inv_cell):  # type: ignore[no-untyped-def]
    """Cell index (x-major) of each of the first n atoms, clipped into the grid."""
    cidx = np.empty(n, np.int64)
    for i in range(n):
        c = 0
        for d in range(3):
            k = int((pos[i, d] - lo[d]) * inv_cell[d])
            k = min(max(k, 0), ncell[d] - 1)
            c = c * ncell[d] + k
        cidx[i] = c
    return cidx


@njit(cache=True)
def build_list(pos, ids, nlocal, ntotal, lo, ncell, inv_cell, rlist2, cap):  # type: ignore[no-untyped-def]
    """Half Verlet list (CSR) of the owned atoms, which must be sorted by cell; returns (offsets, neighbours,
    count), count -1 on overflow. Owned partners come from the 13 forward cells and the rest of the atom's own
    cell (half stencil); ghost partners from all 27 cells, kept where their global id is the higher."""
    nc = ncell[0] * ncell[1] * ncell[2]
    cidx = cells_of(pos, ntotal, lo, ncell, inv_cell)
    ostart = np.zeros(nc + 1, np.int64)  # owned atoms of cell c: ostart[c]..ostart[c + 1]
    gstart = np.zeros(nc + 1, np.int64)  # ghosts of cell c: gatoms[gstart[c]..gstart[c + 1]]
    for i in range(nlocal):
        ostart[cidx[i] + 1] += 1
    for i in range(nlocal, ntotal):
        gstart[cidx[i] + 1] += 1
    for c in range(nc):
        ostart[c + 1] += ostart[c]
        gstart[c + 1] += gstart[c]
    fill = gstart[:-1].copy()
    gatoms = np.empty(ntotal - nlocal, np.int64)
    for i in range(nlocal, ntotal):
        gatoms[fill[cidx[i]]] = i
        fill[cidx[i]] += 1
    offs = np.empty(nlocal + 1, np.int64)
    nbr = np.empty(cap, np.int32)
    k = 0
    for i in range(nlocal):
        offs[i] = k
        c = cidx[i]
        cz = c % ncell[2]
        cy = (c // ncell[2]) % ncell[1]
        cx = c // (ncell[2] * ncell[1])
        xi, yi, zi, idi = pos[i, 0], pos[i, 1], pos[i, 2], ids[i]
        for ax in range(max(cx - 1, 0), min(cx + 2, ncell[0])):
            for ay in range(max(cy - 1, 0), min(cy + 2, ncell[1])):
                for az in range(max(cz - 1, 0), min(cz + 2, ncell[2])):
                    cc = (ax * ncell[1] + ay) * ncell[2] + az
                    if cc >= c:  # forward cell (x-major index order), or the own cell from i + 1 on
                        first = i + 1 if cc == c else ostart[cc]
                        if k + ostart[cc + 1] - first > cap:
                            return offs, nbr, -1
                        for j in range(first, ostart[cc + 1]):  # store always, keep if inside: no branch
                            dx, dy, dz = xi - pos[j, 0], yi - pos[j, 1], zi - pos[j, 2]
                            nbr[k] = j
                            k += dx * dx + dy * dy + dz * dz < rlist2
                    if k + gstart[cc + 1] - gstart[cc] > cap:
                        return offs, nbr, -1
                    for s in range(gstart[cc], gstart[cc + 1]):
                        j = gatoms[s]
                        dx, dy, dz = xi - pos[j, 0], yi - pos[j, 1], zi - pos[j, 2]
                        nbr[k] = j
                        k += (dx * dx + dy * dy + dz * dz < rlist2) and ids[j] > idi
    offs[nlocal] = k
    return offs, nbr, k


@njit(cache=True, fastmath={"contract"})
def lj_forces(pos, nlocal, offs, nbr, f, rc2):  # type: ignore[no-untyped-def]
    """Plain LJ forces on every atom (owned and ghost, Newton's third law), no energy: the steps between the
    energy steps. The cut-off test is a select, not a branch: about 30 % of listed pairs are outside r_c, in no
    predictable order, and a mispredicted branch costs more than the arithmetic (this kernel takes half the time
    of ``forces``, whose energy sums keep the branch)."""
    f[:, :] = 0.0
    for i in range(nlocal):
        xi, yi, zi = pos[i, 0], pos[i, 1], pos[i, 2]
        fx, fy, fz = 0.0, 0.0, 0.0
        for k in range(offs[i], offs[i + 1]):
            j = nbr[k]
            dx, dy, dz = xi - pos[j, 0], yi - pos[j, 1], zi - pos[j, 2]
            r2 = dx * dx + dy * dy + dz * dz
            ir2 = 1.0 / r2
            ir6 = ir2 * ir2 * ir2
            fs = 24.0 * ir6 * (2.0 * ir6 - 1.0) * ir2
            fs = fs if r2 < rc2 else 0.0
            fx += fs * dx
            fy += fs * dy
            fz += fs * dz
            f[j, 0] -= fs * dx
            f[j, 1] -= fs * dy
            f[j, 2] -= fs * dz
        f[i, 0] += fx
        f[i, 1] += fy
        f[i, 2] += fz


@njit(cache=True, fastmath={"contract"})
def lj_forces_e(pos, nlocal, offs, nbr, f, rc2):  # type: ignore[no-untyped-def]
    """``lj_forces`` and the energies, branch-free: returns (E_LJ unshifted, pairs inside r_c) of the pairs this
    rank holds."""
    f[:, :] = 0.0
    e_lj, npair = 0.0, 0
    for i in range(nlocal):
        xi, yi, zi = pos[i, 0], pos[i, 1], pos[i, 2]
        fx, fy, fz = 0.0, 0.0, 0.0
        for k in range(offs[i], offs[i + 1]):
            j = nbr[k]
            dx, dy, dz = xi - pos[j, 0], yi - pos[j, 1], zi - pos[j, 2]
            r2 = dx * dx + dy * dy + dz * dz
            m = 1.0 if r2 < rc2 else 0.0
            ir2 = 1.0 / r2
            ir6 = ir2 * ir2 * ir2
            fs = m * (24.0 * ir6 * (2.0 * ir6 - 1.0) * ir2)
            e_lj += m * (4.0 * ir6 * (ir6 - 1.0))
            npair += r2 < rc2
            fx += fs * dx
            fy += fs * dy
            fz += fs * dz
            f[j, 0] -= fs * dx
            f[j, 1] -= fs * dy
            f[j, 2] -= fs * dz
        f[i, 0] += fx
        f[i, 1] += fy
        f[i, 2] += fz
    return e_lj, float(npair)


@njit(cache=True)
def forces(pos, q, nlocal, offs, nbr, f, rc2, use_rf, k_rf, c_rf, inv_eps_r):  # type: ignore[no-untyped-def]
    """LJ + reaction field forces on every atom and the energies: returns (E_LJ unshifted, pairs inside r_c,
    E_RF pairs) of the pairs this rank holds."""
    f[:, :] = 0.0
    e_lj, npair, e_rf = 0.0, 0.0, 0.0
    for i in range(nlocal):
        xi, yi, zi = pos[i, 0], pos[i, 1], pos[i, 2]
        fx, fy, fz = 0.0, 0.0, 0.0
        for k in range(offs[i], offs[i + 1]):
            j = nbr[k]
            dx, dy, dz = xi - pos[j, 0], yi - pos[j, 1], zi - pos[j, 2]
            r2 = dx * dx + dy * dy + dz * dz
            if r2 < rc2:
                ir2 = 1.0 / r2
                ir6 = ir2 * ir2 * ir2
                fs = 24.0 * ir6 * (2.0 * ir6 - 1.0) * ir2
                e_lj += 4.0 * ir6 * (ir6 - 1.0)
                npair += 1.0
                if use_rf:
                    qq = q[i] * q[j] * inv_eps_r
                    if qq != 0.0:
                        ir = np.sqrt(ir2)
                        e_rf += qq * (ir + k_rf * r2 - c_rf)
                        fs += qq * (ir * ir2 - 2.0 * k_rf)
                fx += fs * dx
                fy += fs * dy
                fz += fs * dz
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


@njit(cache=True)
def copy_shifted(pos, idx, shift, first):  # type: ignore[no-untyped-def]
    """pos[first + k] = pos[idx[k]] + shift: a halo swap with this rank itself (periodic images), no MPI."""
    for k in range(idx.shape[0]):
        i = idx[k]
        for d in range(3):
            pos[first + k, d] = pos[i, d] + shift[d]


@njit(cache=True)
def scatter_add(f, idx, src):  # type: ignore[no-untyped-def]
    """f[idx[k]] += src[k]: ghost forces back onto the atoms they are images of (the reverse of a halo swap)."""
    for k in range(idx.shape[0]):
        i = idx[k]
        for d in range(3):
            f[i, d] += src[k, d]
