"""``mnp bench md``'s library: the MD benchmark repeated as separate mnp jobs, steps/s and ns/day with spread.

Each repetition is a whole job (``python -m bench.md --json --progress``). :class:`MdFigures` keeps every run's
record; its figures (steps/s, ns/day, communication share) are :class:`~bench.spread.Figure` over the runs, and
every run must have simulated the same system (the same step-0 energy to 1e-9), or it is an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.jobs import BenchError, Nodes, run_job
from bench.spread import Figure, wide_note

__all__ = ["MdFigures", "MdRequest", "run_md"]

ProgressFn = Callable[[str, str, int, int], None]


@dataclass(frozen=True)
class MdRequest:
    where: Nodes
    cells: int = 20  # 20: LAMMPS in.lj's 32,000 atoms
    steps: int = 200
    reps: int = 3
    extra: tuple[str, ...] = ()  # more python -m bench.md options (--rf, --nstlist 10, ...)

    def command(self) -> list[str]:
        return ["python", "-m", "bench.md", "--cells", str(self.cells), "--steps", str(self.steps), *self.extra,
                "--json", "--progress"]


@dataclass
class MdFigures:
    records: list[dict[str, Any]]
    jobs: list[str] = field(default_factory=list)

    def figure(self, key: str) -> Figure:
        return Figure.of([r[key] for r in self.records])

    @property
    def first(self) -> dict[str, Any]:
        return self.records[0]

    @property
    def transport(self) -> str:
        return str(self.first.get("transport"))

    def note(self) -> str | None:
        return wide_note([("steps/s", self.figure("steps_per_s"))],
                         f"md {self.first['ranks']} rank(s) on {self.first['nodes']} node(s)")

    def text(self) -> list[str]:
        r, sps, nsd = self.first, self.figure("steps_per_s"), self.figure("ns_per_day")
        comm = self.figure("comm_share")
        rf = ", reaction field" if r["rf"] else ""
        lines = [f"MD: {r['atoms']} atoms (fcc {r['cells']}^3 cells, LJ r_c {r['rc']}{rf}), {r['steps']} steps, "
                 f"{r['ranks']} rank(s) on {r['nodes']} node(s), transport {self.transport}, "
                 f"decomposition {'x'.join(map(str, r['decomposition']))}",
                 f"step-0 E_pair/atom (LAMMPS in.lj's, unshifted): {r['e0_lj_unshifted_per_atom']:.7f}",
                 f"{'':15}{'median':>12}{'min':>12}{'max':>12}   over {len(self.records)} run(s)",
                 f"{'ns/day':<15}{nsd.median:12.3f}{nsd.min:12.3f}{nsd.max:12.3f}",
                 f"{'steps/s':<15}{sps.median:12.2f}{sps.min:12.2f}{sps.max:12.2f}",
                 f"{'comm. share %':<15}{100 * comm.median:12.1f}{100 * comm.min:12.1f}{100 * comm.max:12.1f}",
                 f"jobs {' '.join(self.jobs)}; {r.get('mpi_library', '')}"]
        note = self.note()
        return lines + ([note] if note else [])

    def to_json(self) -> dict[str, Any]:
        r = self.first
        return {"benchmark": "md", "atoms": r["atoms"], "cells": r["cells"], "steps": r["steps"], "rf": r["rf"],
                "ranks": r["ranks"], "nodes": r["nodes"], "transport": self.transport,
                "decomposition": r["decomposition"], "e0_lj_unshifted_per_atom": r["e0_lj_unshifted_per_atom"],
                "steps_per_s": self.figure("steps_per_s").to_json(), "ns_per_day": self.figure("ns_per_day").to_json(),
                "comm_share": self.figure("comm_share").to_json(), "reps": len(self.records), "jobs": self.jobs,
                "note": self.note(), "mpi_library": r.get("mpi_library"), "machine": r.get("machine"),
                "runs": [{k: x[k] for k in ("steps_per_s", "ns_per_day", "comm_share", "wall_s", "timings_mean_s")}
                         for x in self.records]}


def run_md(req: MdRequest, label: str = "", on_progress: ProgressFn | None = None,
           on_note: Callable[[str], None] | None = None) -> MdFigures:
    if req.reps < 1:
        raise BenchError("--reps: at least 1", 2)
    label = label or f"md {req.where.ranks} rank(s) on {req.where.nodes} node(s)"
    out = MdFigures([])
    for i in range(req.reps):
        tag = f"{label} run {i + 1}/{req.reps}"

        def progress(what: str, done: int, total: int, tag: str = tag) -> None:
            if on_progress:
                on_progress(tag, what, done, total)

        run = run_job("md", req.command(), req.where, progress, on_note)
        recs = [json.loads(ln) for ln in run.stdout if ln.startswith("{")]
        if len(recs) != 1:
            raise BenchError(f"{label}: expected one JSON record from rank 0, got {len(recs)}")
        out.records.append(recs[0])
        out.jobs.append(run.job_id)
    e0 = [r["e0_per_atom"]["pot"] for r in out.records]
    if max(e0) - min(e0) > 1e-9 * abs(e0[0]):
        raise BenchError(f"{label}: the runs simulated different systems (step-0 energies {e0})")
    return out
