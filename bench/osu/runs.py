"""``mnp bench osu``'s library: one OSU benchmark, repeated as separate mnp jobs, each figure with its spread.

Each repetition is a whole job (``python -m bench.osu --json`` for the numba and mpi4py call paths,
``bench/c/osu_ref.c`` for the C one): a figure that depends on how one process's memory landed shows as spread
between repetitions, not hidden inside one. The text is OMB 7.4's table of the medians, then ``# mnp:`` comment
lines: where the figures came from, each size's min and max over the repetitions, and a note when they are far
apart. :meth:`OsuFigures.to_json` is ``--json``'s object (keys in README "Benchmarks").
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.jobs import BenchError, Nodes, run_job
from bench.osu.facts import transport_of
from bench.osu.omb import parse_omb
from bench.osu.report import FIELD, meta_lines, omb_header, omb_row
from bench.osu.suite import BENCHMARKS, DATATYPE, OSU_VERSION, Spec
from bench.spread import Figure, wide_note

__all__ = ["PATHS", "OsuFigures", "OsuRequest", "run_osu"]

PATHS = ("numba", "mpi4py", "c")
ProgressFn = Callable[[str, str, int, int], None]  # (label, "sizes", done, total)


@dataclass(frozen=True)
class OsuRequest:
    benchmark: str
    where: Nodes
    path: str = "numba"
    sizes: str | None = None  # -m [MIN:]MAX
    iterations: int | None = None
    warmup: int | None = None
    window: int = 64
    full: bool = False
    reps: int = 3
    c_binary: Path | None = None  # path "c": the built reference


@dataclass
class OsuFigures:
    benchmark: str
    path: str
    sizes: list[int]
    figures: list[Figure]
    env: dict[str, Any]
    jobs: list[str]
    iterations: list[int] = field(default_factory=list)
    rank_min: list[float] | None = None  # collectives: median over repetitions of the fastest rank's average
    rank_max: list[float] | None = None

    @property
    def spec(self) -> Spec:
        return BENCHMARKS[self.benchmark]

    @property
    def transport(self) -> str:
        return str(self.env.get("transport"))

    def note(self) -> str | None:
        return wide_note([(f"{s} B", f) for s, f in zip(self.sizes, self.figures)],
                         f"osu {self.benchmark} {self.path} {self.transport}")

    def text(self, full: bool = False) -> list[str]:
        full = full and self.rank_min is not None
        rows = [omb_row(s, f.median, full, self.rank_min[i] if self.rank_min else None,
                        self.rank_max[i] if self.rank_max else None, self.iterations[i] if self.iterations else 0)
                for i, (s, f) in enumerate(zip(self.sizes, self.figures))]
        unit = self.spec.unit
        spread = [f"# mnp: median of {len(self.jobs)} run(s); min and max over the runs ({unit}):",
                  f"# mnp: {'Size':<10}{'min':>{FIELD}}{'max':>{FIELD}}"]
        spread += [f"# mnp: {s:<10d}{f.min:{FIELD}.2f}{f.max:{FIELD}.2f}" for s, f in zip(self.sizes, self.figures)]
        note = self.note()
        return [*omb_header(self.spec, full), *rows, *meta_lines(self.env, self.path, self.jobs), *spread,
                *([f"# mnp: {note}"] if note else [])]

    def to_json(self) -> dict[str, Any]:
        spec = self.spec
        out: dict[str, Any] = {
            "benchmark": self.benchmark, "osu_version": OSU_VERSION, "title": f"OSU MPI {spec.title} v{OSU_VERSION}",
            "datatype": DATATYPE, "column": spec.column, "unit": spec.unit, "path": self.path,
            "transport": self.transport, "reps": len(self.jobs), "jobs": self.jobs,
            "rows": [{"size": s, **f.to_json()} for s, f in zip(self.sizes, self.figures)],
            "note": self.note(), "env": self.env}
        if self.rank_min is not None:
            out["rank_min"], out["rank_max"] = self.rank_min, self.rank_max
        return out


def command(req: OsuRequest) -> list[str]:
    opts = [f for flag, v in (("-m", req.sizes), ("-i", req.iterations), ("-x", req.warmup)) if v is not None
            for f in (flag, str(v))]
    if req.benchmark in ("bw", "bibw"):
        opts += ["-W", str(req.window)]
    if req.path == "c":
        if req.c_binary is None:
            raise BenchError("osu: call path c: no C reference built")
        return [str(req.c_binary), req.benchmark, *opts, "-p"]
    return ["python", "-m", "bench.osu", req.benchmark, *opts, *(["-f"] if req.full else []), "--path", req.path,
            "--json", "--progress"]


def _c_record(lines: list[str], where: Nodes) -> dict[str, Any]:
    t = parse_omb(lines)
    if not t.rows:
        raise BenchError("osu: the C reference printed no rows")
    lib = next((ln.split(";", 1)[1].strip() for ln in t.trailer if ln.startswith("# mnp: call path c;")), "")
    prov = next((ln.split("=", 1)[1].strip() for ln in t.trailer if ln.startswith("# mnp: FI_PROVIDER=")), "")
    env = {"mpi_library": " ".join(lib.split()), "transport": transport_of(where.nodes, {"FI_PROVIDER": prov}),
           "fi_provider": prov or None, "nodes": where.nodes, "ranks": where.ranks, "path": "c"}
    return {"sizes": [s for s, _ in t.rows], "values": [v[0] for _, v in t.rows], "env": env, "iterations": []}


def _record(lines: list[str], req: OsuRequest) -> dict[str, Any]:
    if req.path == "c":
        return _c_record(lines, req.where)
    recs = [json.loads(ln) for ln in lines if ln.startswith("{")]
    if len(recs) != 1:
        raise BenchError(f"osu {req.benchmark}: expected one JSON record from rank 0, got {len(recs)}")
    return recs[0]


def run_osu(req: OsuRequest, label: str = "", on_progress: ProgressFn | None = None,
            on_note: Callable[[str], None] | None = None) -> OsuFigures:
    """Run ``req.reps`` jobs one after the other; the figures per size over them."""
    if req.benchmark not in BENCHMARKS:
        raise BenchError(f"osu: no benchmark {req.benchmark!r} (one of {', '.join(BENCHMARKS)})", 2)
    if req.reps < 1:
        raise BenchError("--reps: at least 1", 2)
    label = label or f"osu {req.benchmark} {req.path} {'shm' if req.where.nodes == 1 else req.where.transport}"
    cmd = command(req)
    recs, jobs = [], []
    for i in range(req.reps):
        tag = f"{label} run {i + 1}/{req.reps}"

        def progress(what: str, done: int, total: int, tag: str = tag) -> None:
            if on_progress:
                on_progress(tag, what, done, total)

        run = run_job(f"osu-{req.benchmark}-{req.path}", cmd, req.where, progress, on_note)
        recs.append(_record(run.stdout, req))
        jobs.append(run.job_id)
    sizes = recs[0]["sizes"]
    if any(r["sizes"] != sizes for r in recs):
        raise BenchError(f"{label}: the runs measured different sizes")
    figures = [Figure.of([r["values"][k] for r in recs]) for k in range(len(sizes))]
    env = {**recs[0]["env"], "path": req.path}
    rmin = rmax = None
    if "rank_min" in recs[0]:
        rmin = [statistics.median(r["rank_min"][k] for r in recs) for k in range(len(sizes))]
        rmax = [statistics.median(r["rank_max"][k] for r in recs) for k in range(len(sizes))]
    return OsuFigures(req.benchmark, req.path, sizes, figures, env, jobs, recs[0].get("iterations") or [], rmin, rmax)
