"""The registered MD run: velocity Verlet, buffered Verlet list rebuilt every ``nstlist`` steps, timed sections.

Step 0 (forces, energies) and the JIT load are setup, not timed; the timed loop is steps 1..S after a barrier.
Sections (seconds per rank): ``neighbour search`` (binning + list), ``domain decomp.`` (migration, sorting and
ghost borders on rebuild steps: compute and MPI), ``force``, ``comm. coord.`` (halo exchange of positions),
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
        self.warm_up()
        self.rebuild()

    def warm_up(self) -> None:
        """Load (or compile) the kernels the timed loop calls first, on empty arrays, so no JIT is timed."""
        z = np.zeros((1, 3))
        self.k.kick(z, z, 0, 0.0)
        self.k.drift(z, z, 0, 0.0)
        self.k.gather_shifted(z, np.zeros(0, np.int64), np.zeros(3), z)

    def rebuild(self) -> None:
        """Migrate, sort owned atoms by cell (memory locality), add ghosts, rebuild the Verlet list."""
        p, dom, t0 = self.p, self.dom, time.perf_counter()
        if hasattr(self, "pos"):
            self.state[:, :3] = self.pos[:self.nlocal]
            self.state[:, 3:6] = self.vel
        s = dom.migrate(self.state)
        rel = (s[:, :3] - dom.lo) / p.rlist
        n = np.maximum((dom.hi - dom.lo) / p.rlist, 1).astype(np.int64)
        cell = np.clip(rel.astype(np.int64), 0, n - 1)
        s = s[np.argsort((cell[:, 0] * n[1] + cell[:, 1]) * n[2] + cell[:, 2], kind="stable")]
        self.state, self.nlocal = s, len(s)
        self.vel = np.ascontiguousarray(s[:, 3:6])
        self.pos, self.q = dom.borders(np.ascontiguousarray(s[:, :3]), np.ascontiguousarray(s[:, 6]))
        t1 = time.perf_counter()
        lo = dom.lo - p.rlist
        ncell = np.maximum(((dom.hi - dom.lo) + 2 * p.rlist) // p.rlist, 1).astype(np.int64)
        inv_cell = ncell / ((dom.hi - dom.lo) + 2 * p.rlist)
        self.cap = max(self.cap, 64 * self.nlocal + 1024)
        while True:
            self.offs, self.nbr, k = self.k.build_list(self.pos, self.nlocal, len(self.pos), lo, ncell, inv_cell,
                                                       p.rlist ** 2, self.cap)
            if k >= 0:
                break
            self.cap *= 2
        self.f = np.zeros((self.nlocal, 3))
        t2 = time.perf_counter()
        self.t["domain decomp."] += t1 - t0
        self.t["neighbour search"] += t2 - t1

    def force(self) -> None:
        p, t0 = self.p, time.perf_counter()
        self.e = self.k.forces(self.pos, self.q, self.nlocal, self.offs, self.nbr, self.f, p.rc ** 2, p.rf,
                               p.k_rf, p.c_rf, 1.0 / p.eps_r)
        self.t["force"] += time.perf_counter() - t0

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

    def step(self, step: int) -> None:
        p, t0 = self.p, time.perf_counter()
        self.k.kick(self.vel, self.f, self.nlocal, 0.5 * p.dt)
        self.k.drift(self.pos, self.vel, self.nlocal, p.dt)
        t1 = time.perf_counter()
        self.t["update"] += t1 - t0
        if step % p.nstlist == 0:
            self.rebuild()
        else:
            self.dom.halo(self.pos, self.k.gather_shifted)
            self.t["comm. coord."] += time.perf_counter() - t1
        self.force()
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
    t0 = time.perf_counter()
    every = max(p.steps // 20, 1)
    for s in range(1, p.steps + 1):
        eng.step(s)
        if s % p.nstcalcenergy == 0 or s == p.steps:
            thermo.append(eng.energies(s))
        if progress and (s % every == 0 or s == p.steps):
            progress(s, p.steps)
    wall = time.perf_counter() - t0
    eng.t["rest"] = max(wall - sum(eng.t.values()), 0.0)
    per_rank = comm.gather({"wall_s": wall, "host": socket.gethostname(), "atoms": eng.nlocal,
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
