"""The registered MD run: velocity Verlet, buffered Verlet list rebuilt every ``nstlist`` steps, timed sections.

Step 0 (forces, energies) and the JIT load are setup, not timed; the timed loop is steps 1..S after a barrier.
Energies are computed on the energy steps only (every ``nstcalcenergy`` and the last), as LAMMPS computes them
on thermo steps only; the other steps compute forces alone (the same forces).
Sections (seconds per rank): ``neighbour search`` (binning + list), ``domain decomp.`` (migration, sorting and
ghost borders on rebuild steps: compute and MPI), ``force``, ``comm. coord.`` (halo exchange of positions, and
the ghosts' forces sent back to their owners),
``wait + comm. E`` (the energy Allreduce every ``nstcalcenergy`` steps: waiting for the slowest rank shows here),
``update`` (integration and kinetic energy), ``rest``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.md.system import LAMMPS_IN_LJ_EPAIR, Params, lattice, rf_self_energy, velocities
from bench.osu.facts import machine, transport_of

RUNS: dict[str, Callable[..., dict[str, Any]]] = {}
StepProgress = Callable[[int, int], None]  # (steps done, steps)
SECTIONS = ("neighbour search", "domain decomp.", "force", "comm. coord.", "wait + comm. E", "update", "rest")


def registered(name: str) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    def put(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        RUNS[name] = fn
        return fn
    return put


class Engine:
    """One rank's share of the system and the steps that advance it."""

    # set by rebuild(): owned atoms first, then ghosts (pos); velocities of the owned ones
    pos: np.ndarray
    vel: np.ndarray
    nlocal: int

    def __init__(self, comm: Any, p: Params) -> None:
        from bench.md import kernels
        from bench.md.domain import Domain

        self.k, self.p, self.comm = kernels, p, comm
        self.dom = Domain(comm, p)
        pos, q = lattice(p)
        self.self_rf = rf_self_energy(p, q)
        v = velocities(p)
        mine = self.dom.mine(pos)
        ids = np.nonzero(mine)[0].astype(np.float64)
        self.state = np.column_stack([pos[mine], v[mine], q[mine], ids])
        self.cap = 0
        self.t = dict.fromkeys(SECTIONS, 0.0)
        # the list grid: cells at least r_list wide over the subdomain and its ghost shell, fixed for the run
        dom = self.dom
        self.grid_lo = dom.lo - p.rlist
        self.ncell = np.maximum(((dom.hi - dom.lo) + 2 * p.rlist) // p.rlist, 1).astype(np.int64)
        self.inv_cell = self.ncell / ((dom.hi - dom.lo) + 2 * p.rlist)
        self.warm_up()
        self.rebuild()

    def warm_up(self) -> None:
        """Load (or compile) the kernels the timed loop calls first, on empty arrays, so no JIT is timed."""
        z, none = np.zeros((1, 3)), np.zeros(0, np.int64)
        self.k.kick(z, z, 0, 0.0)
        self.k.drift(z, z, 0, 0.0)
        self.k.gather_shifted(z, none, np.zeros(3), z)
        self.k.copy_shifted(z, none, np.zeros(3), 0)
        self.k.scatter_add(z, none, z)
        self.k.lj_forces(z, 0, np.zeros(1, np.int64), np.zeros(0, np.int32), z, 1.0)

    def rebuild(self) -> None:
        """Migrate, sort owned atoms by cell (memory locality), add ghosts, rebuild the Verlet list."""
        p, dom, t0 = self.p, self.dom, time.perf_counter()
        if hasattr(self, "pos"):
            self.state[:, :3] = self.pos[:self.nlocal]
            self.state[:, 3:6] = self.vel
        s = dom.migrate(self.state)
        pos = np.ascontiguousarray(s[:, :3])
        s = s[np.argsort(self.k.cells_of(pos, len(pos), self.grid_lo, self.ncell, self.inv_cell), kind="stable")]
        self.state, self.nlocal = s, len(s)
        self.vel = np.ascontiguousarray(s[:, 3:6])
        self.pos, self.q, self.ids = dom.borders(np.ascontiguousarray(s[:, :3]), np.ascontiguousarray(s[:, 6]),
                                                 np.ascontiguousarray(s[:, 7]))
        t1 = time.perf_counter()
        self.cap = max(self.cap, 48 * self.nlocal + 1024)
        while True:
            self.offs, self.nbr, k = self.k.build_list(self.pos, self.ids, self.nlocal, len(self.pos), self.grid_lo,
                                                       self.ncell, self.inv_cell, p.rlist ** 2, self.cap)
            if k >= 0:
                break
            self.cap *= 2
        self.f = np.zeros((len(self.pos), 3))
        t2 = time.perf_counter()
        self.t["domain decomp."] += t1 - t0
        self.t["neighbour search"] += t2 - t1

    def force(self, energy: bool = True) -> None:
        """Forces on owned atoms and ghosts, then the ghosts' forces back to their owners; the energies too when
        ``energy`` (with reaction field, always)."""
        p, t0 = self.p, time.perf_counter()
        if p.rf:
            self.e = self.k.forces(self.pos, self.q, self.nlocal, self.offs, self.nbr, self.f, p.rc ** 2, p.rf,
                                   p.k_rf, p.c_rf, 1.0 / p.eps_r)
        elif energy:
            self.e = (*self.k.lj_forces_e(self.pos, self.nlocal, self.offs, self.nbr, self.f, p.rc ** 2), 0.0)
        else:
            self.k.lj_forces(self.pos, self.nlocal, self.offs, self.nbr, self.f, p.rc ** 2)
        t1 = time.perf_counter()
        self.dom.reverse(self.f, self.k)
        self.t["force"] += t1 - t0
        self.t["comm. coord."] += time.perf_counter() - t1

    def energies(self, step: int) -> dict[str, float]:
        from mpi4py import MPI

        p, t0 = self.p, time.perf_counter()
        local = np.array([*self.e, self.k.sum_v2(self.vel, self.nlocal), self.nlocal])
        t1 = time.perf_counter()
        tot = np.zeros_like(local)
        self.comm.Allreduce([local, MPI.DOUBLE], [tot, MPI.DOUBLE], op=MPI.SUM)
        self.t["update"] += t1 - t0
        self.t["wait + comm. E"] += time.perf_counter() - t1
        e_lj, npair, e_rf, v2, n = tot
        if int(n) != p.natoms:
            raise RuntimeError(f"step {step}: {int(n)} atoms owned in all, {p.natoms} expected (atoms lost)")
        lj_shifted, rf = e_lj - npair * p.lj_shift, e_rf + self.self_rf
        ke = 0.5 * v2
        return {"step": step, "temp": v2 / (3 * p.natoms - 3), "lj_unshifted": e_lj / n, "lj": lj_shifted / n,
                "rf": rf / n, "pot": (lj_shifted + rf) / n, "kin": ke / n, "total": (lj_shifted + rf + ke) / n}

    def step(self, step: int, energy: bool = True) -> None:
        p, t0 = self.p, time.perf_counter()
        self.k.kick(self.vel, self.f, self.nlocal, 0.5 * p.dt)
        self.k.drift(self.pos, self.vel, self.nlocal, p.dt)
        t1 = time.perf_counter()
        self.t["update"] += t1 - t0
        if step % p.nstlist == 0:
            self.rebuild()
        else:
            self.dom.halo(self.pos, self.k)
            self.t["comm. coord."] += time.perf_counter() - t1
        self.force(energy)
        t2 = time.perf_counter()
        self.k.kick(self.vel, self.f, self.nlocal, 0.5 * p.dt)
        self.t["update"] += time.perf_counter() - t2


@registered("md")
def run_md(p: Params, progress: StepProgress | None = None) -> dict[str, Any]:
    """Run the system; the record (complete on rank 0, None elsewhere). ``progress(done, steps)`` about 20 times
    a run, on every rank, between steps (its time counts as "rest")."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    t_init = time.perf_counter()
    eng = Engine(comm, p)
    eng.force()
    thermo = [eng.energies(0)]
    eng.t = dict.fromkeys(SECTIONS, 0.0)
    init_s = time.perf_counter() - t_init
    comm.Barrier()
    t0, cpu0 = time.perf_counter(), time.process_time()
    every = max(p.steps // 20, 1)
    for s in range(1, p.steps + 1):
        energy = s % p.nstcalcenergy == 0 or s == p.steps
        eng.step(s, energy)
        if energy:
            thermo.append(eng.energies(s))
        if progress and (s % every == 0 or s == p.steps):
            progress(s, p.steps)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    eng.t["rest"] = max(wall - sum(eng.t.values()), 0.0)
    per_rank = comm.gather({"wall_s": wall, "cpu_s": cpu, "host": socket.gethostname(), "atoms": eng.nlocal,
                            "ghosts": len(eng.pos) - eng.nlocal, "pairs": int(eng.offs[-1]), **eng.t}, root=0)
    if comm.Get_rank() != 0:
        return {}
    assert per_rank is not None
    rec = record(p, comm.Get_size(), eng.dom.dims, per_rank, thermo, init_s)
    rec["mpi_library"] = " ".join(MPI.Get_library_version().splitlines()[0].split())
    return rec


def record(p: Params, size: int, dims: list[int], per_rank: list[dict[str, Any]], thermo: list[dict[str, float]],
           init_s: float) -> dict[str, Any]:
    wall = max(r["wall_s"] for r in per_rank)
    mean = {k: sum(r[k] for r in per_rank) / size for k in SECTIONS}
    t = np.array([e["step"] * p.dt for e in thermo])
    etot = np.array([e["total"] for e in thermo])
    slope = float(np.polyfit(t, etot, 1)[0]) if len(t) > 1 else 0.0
    steps_s = p.steps / wall
    ns_day = steps_s * p.dt / 1000.0 * 86400.0
    comm_s = mean["comm. coord."] + mean["wait + comm. E"] + mean["domain decomp."]
    return {
        "benchmark": "md", "atoms": p.natoms, "cells": p.cells, "density": p.density, "rc": p.rc, "skin": p.skin,
        "nstlist": p.nstlist, "dt_tau": p.dt, "steps": p.steps, "temp0": p.temp, "seed": p.seed,
        "rf": p.rf, "charge": p.charge if p.rf else 0.0, "eps_r": p.eps_r, "eps_rf": p.eps_rf,
        "k_rf": p.k_rf if p.rf else 0.0, "c_rf": p.c_rf if p.rf else 0.0, "lj_shift": p.lj_shift,
        "ranks": size, "nodes": len({r["host"] for r in per_rank}), "hosts": sorted({r["host"] for r in per_rank}),
        "decomposition": dims, "fi_provider": os.environ.get("FI_PROVIDER"),
        "transport": transport_of(len({r["host"] for r in per_rank}), dict(os.environ)), "machine": machine(),
        "init_s": init_s, "wall_s": wall, "steps_per_s": steps_s, "atom_steps_per_s": steps_s * p.natoms,
        "ns_per_day": ns_day, "hour_per_ns": 24.0 / ns_day, "ns_unit": "1 ns := 1000 tau (tau taken as 1 ps)",
        "timings_mean_s": mean, "comm_share": comm_s / wall, "per_rank": per_rank,
        "e0_lj_unshifted_per_atom": thermo[0]["lj_unshifted"], "lammps_in_lj_epair": LAMMPS_IN_LJ_EPAIR,
        "e0_per_atom": thermo[0], "e_end_per_atom": thermo[-1],
        "drift_rel": (etot[-1] - etot[0]) / abs(etot[0]), "drift_per_atom_per_tau": slope,
        "drift_max_abs_per_atom": float(np.max(np.abs(etot - etot[0]))), "thermo": thermo,
    }
