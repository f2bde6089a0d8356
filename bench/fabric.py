"""``mnp bench fabric``'s library: shared memory within a node against the network between nodes.

OSU latency and bandwidth, for every call path asked for (the C reference, numba, mpi4py), on two placements: both
ranks on one node (``shm``) and one rank on each of two nodes (whatever mnp's ``auto`` transport chose there:
``efa`` where every node has EFA, else ``tcp``; when it chose something other than tcp, tcp is measured as well).
Then the MD run for each rank count: all ranks on one node (shared memory) against the same ranks spread over
nodes (one rank per node where there are enough nodes). Every figure is the median of ``reps`` separate jobs,
with its min and max. The facts of the machine (MPI, provider, interface, /dev/shm, CPU) come from the jobs'
own records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.jobs import Nodes
from bench.md.runs import MdFigures, MdRequest, run_md
from bench.osu.runs import OsuFigures, OsuRequest, run_osu

__all__ = ["FabricRequest", "FabricResult", "run_fabric"]

ProgressFn = Callable[[str, str, int, int], None]


@dataclass(frozen=True)
class FabricRequest:
    nodes: int = 2
    hosts: list[Any] | None = None
    ssh: Any = None
    isolate: bool | None = None
    paths: tuple[str, ...] = ("c", "numba", "mpi4py")
    max_size: int = 4 << 20
    iterations: int | None = None
    md_ranks: tuple[int, ...] = (1, 2)
    md_cells: int = 12
    md_steps: int = 100
    reps: int = 3
    home: Path | None = None


@dataclass
class FabricResult:
    osu: list[OsuFigures] = field(default_factory=list)
    md: list[tuple[str, MdFigures]] = field(default_factory=list)  # ("shm" | "net", figures)
    facts: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def osu_for(self, benchmark: str) -> list[OsuFigures]:
        return [f for f in self.osu if f.benchmark == benchmark]

    def notes(self) -> list[str]:
        found = [f.note() for f in self.osu] + [m.note() for _, m in self.md]
        return [n for n in found if n]

    def ratios(self) -> list[str]:
        """One line per comparison the report is for: network/shm per path, each path against C, MD net/shm."""
        out = []
        lat = {(f.transport, f.path): f for f in self.osu_for("latency")}
        picks = [s for s in (8, 65536, 1 << 20) if any(s in f.sizes for f in lat.values())]

        def at(f: OsuFigures, s: int) -> float | None:
            return f.figures[f.sizes.index(s)].median if s in f.sizes else None

        def ratio_line(title: str, a: OsuFigures, b: OsuFigures) -> str:
            parts = []
            for s in picks:
                x, y = at(a, s), at(b, s)
                if x and y:
                    parts.append(f"{_size(s)} {x / y:.2f}")
            return f"{title}: " + ", ".join(parts)

        for (tr, path), f in sorted(lat.items()):
            if tr != "shm" and ("shm", path) in lat:
                out.append(ratio_line(f"latency {tr}/shm, {path}", f, lat["shm", path]))
        for (tr, path), f in sorted(lat.items()):
            if path != "c" and (tr, "c") in lat:
                out.append(ratio_line(f"latency {path}/c, {tr}", f, lat[tr, "c"]))
        shm = {m.first["ranks"]: m for w, m in self.md if w == "shm"}
        for w, m in self.md:
            r = m.first["ranks"]
            if w == "net" and r in shm:
                a, b = m.figure("ns_per_day").median, shm[r].figure("ns_per_day").median
                out.append(f"md ns/day across {m.first['nodes']} nodes / one node, {r} ranks: {a / b:.2f}")
        return out

    def text(self) -> list[str]:
        f = self.facts
        lines = [f"mnp bench fabric: {f.get('mpi_library')}; {f.get('cpu')}, {f.get('cpus')} CPU(s) per node; "
                 f"network {f.get('network')} ({f.get('network_why')}); every figure: median (min-max) of "
                 f"{f.get('reps')} job(s)"]
        for bench, unit in (("latency", "us"), ("bw", "MB/s")):
            figs = self.osu_for(bench)
            if not figs:
                continue
            lines += ["", f"osu {bench} ({unit})", f"{'Size':<10}" + "".join(f"{g.transport + ' ' + g.path:>26}"
                                                                      for g in figs)]
            for s in figs[0].sizes:
                row = f"{s:<10d}"
                for g in figs:
                    row += f"{g.figures[g.sizes.index(s)].short():>26}" if s in g.sizes else f"{'-':>26}"
                lines.append(row)
        if self.md:
            lines += ["", "md ns/day (median (min-max))", f"{'ranks':<8}{'nodes':>6}{'where':>8}{'ns/day':>28}"
                      f"{'steps/s':>28}"]
            for w, m in self.md:
                lines.append(f"{m.first['ranks']:<8d}{m.first['nodes']:>6d}{w:>8}"
                             f"{m.figure('ns_per_day').short('.3f'):>28}{m.figure('steps_per_s').short():>28}")
        lines += ["", *self.ratios(), *self.notes(), *(f"skipped: {s}" for s in self.skipped)]
        return lines

    def to_json(self) -> dict[str, Any]:
        return {"facts": self.facts, "osu": [f.to_json() for f in self.osu],
                "md": [{"where": w, **m.to_json()} for w, m in self.md], "ratios": self.ratios(),
                "notes": self.notes(), "skipped": self.skipped}


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB" if n >= 1024 else f"{n} B"


def _record_facts(job_id: str, home: Path | None) -> dict[str, Any]:
    """mnp's own decisions for a job: transport and why, interface, /dev/shm (from its record)."""
    from mnp.records import Records

    records = Records(home)
    try:
        info = records.get(job_id).info
    finally:
        records.close()
    tr, ifc = info.get("transport") or {}, info.get("iface") or {}
    shm = {k: v.get("total") for k, v in (info.get("shm") or {}).items()}
    return {"network_why": tr.get("why"), "iface": ifc.get("name"), "iface_why": ifc.get("why"),
            "dev_shm_bytes_per_node": shm}


def run_fabric(req: FabricRequest, on_progress: ProgressFn | None = None,
               on_note: Callable[[str], None] | None = None) -> FabricResult:
    from bench.cref import c_reference

    out = FabricResult()
    paths = list(req.paths)
    binary = None
    if "c" in paths:
        binary, how = c_reference(req.home) if req.hosts is None else (None, "local nodes only")
        if binary is None:
            out.skipped.append(f"call path c: {how}")
            paths.remove("c")
    base = Nodes(1, 2, "shm", req.hosts, req.ssh, req.isolate, req.home)
    net = replace(base, nodes=2, ranks_per_node=1, transport="auto")
    sizes = f"{req.max_size}"
    placements = [("shm", base), ("net", net)]
    i = 0
    while i < len(placements):
        label, where = placements[i]
        for bench in ("latency", "bw"):
            for path in paths:
                r = OsuRequest(bench, where, path, sizes, req.iterations, None, 64, False, req.reps,
                               binary if path == "c" else None)
                figs = run_osu(r, f"osu {bench} {path} {label}", on_progress, on_note)
                out.osu.append(figs)
                if label == "net" and "network" not in out.facts:
                    out.facts.update(network=figs.transport, **_record_facts(figs.jobs[0], req.home))
                    if figs.transport not in ("tcp", "shm"):
                        placements.append(("tcp", replace(net, transport="tcp")))
        i += 1
    for ranks in req.md_ranks:
        md = MdRequest(replace(base, ranks_per_node=ranks), req.md_cells, req.md_steps, req.reps)
        out.md.append(("shm", run_md(md, f"md {ranks} rank(s) on 1 node", on_progress, on_note)))
        spread = min(ranks, req.nodes)
        if ranks > 1 and ranks % spread == 0:
            where = replace(base, nodes=spread, ranks_per_node=ranks // spread, transport="auto")
            md = replace(md, where=where)
            out.md.append(("net", run_md(md, f"md {ranks} rank(s) on {spread} nodes", on_progress, on_note)))
        elif ranks > 1:
            out.skipped.append(f"md {ranks} ranks across nodes: not a multiple of {spread} nodes")
    first = next((f.env for f in out.osu if f.env.get("cpu")), {})
    machine = out.md[0][1].first.get("machine", {}) if out.md else {}
    out.facts.update({k: first.get(k, machine.get(k)) for k in ("cpu", "cpus", "kernel", "thp", "dev_shm_bytes")})
    first = first or (out.md[0][1].first if out.md else {})
    out.facts.update(mpi_library=first.get("mpi_library"), reps=req.reps, nodes=req.nodes,
                     paths=paths, local=req.hosts is None,
                     versions={k: first.get(k) for k in ("python", "mpi4py", "numba") if first.get(k)})
    return out
