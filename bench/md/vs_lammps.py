"""bench.md against LAMMPS on the same input, per core and on 2 ranks: ``python -m bench.md.compare --lammps``.

Each repetition runs, one after the other as mnp jobs on one local node over shared memory: LAMMPS in.lj on
1 rank, bench.md on 1 rank, LAMMPS on 2 ranks, bench.md on 2 ranks (alternating, so a busy minute hits both
codes). bench.md runs the same system and the same work: 32,000 atoms by default, r_c 2.5, skin 0.3, the list
rebuilt every 20 steps without a check (``neigh_modify delay 0 every 20 check no``), energies every 100 steps as
in.lj's ``thermo 100``. Printed: steps/s of each (median, min, max), the ratio bench.md/LAMMPS per core taken
run pair by run pair, each code's 2-rank strong-scaling efficiency (steps/s on 2 ranks / (2 x on 1 rank), per
repetition), each code's CPU use (CPU time / wall time: on a shared machine, the share of the loop a process
actually ran) with the per-core ratio per CPU-second, and the checks that both did the same work: step-0 E_pair
per atom (equal to LAMMPS's 8 digits) and the neighbour-list pairs of the last rebuild (LAMMPS's ``Total # of
neighbors``; the trajectories differ, since the velocity generators do, so equal to within 1 %).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.jobs import BenchError, Nodes, run_job
from bench.md import lammps
from bench.md.runs import MdRequest, run_md
from bench.spread import Figure, wide_note

RANKS = (1, 2)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(cells: int, steps: int, reps: int, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    exe = lammps.lmp()
    if exe is None:
        raise BenchError("--lammps: no 'lmp' on PATH (Debian: apt-get install lammps)", 2)
    lam: dict[int, list[dict[str, Any]]] = {r: [] for r in RANKS}
    ours: dict[int, list[dict[str, Any]]] = {r: [] for r in RANKS}
    with tempfile.TemporaryDirectory(prefix="mnp-md-lammps-") as tmp:
        inp = lammps.write_input(Path(tmp), cells, steps)
        for i in range(reps):
            for r in RANKS:
                where = Nodes(1, r, "shm")
                got = lammps.parse(run_job("lammps", lammps.command(exe, inp), where, mpi="auto").stdout)
                lam[r].append(got)
                _say(f"run {i + 1}/{reps}: LAMMPS   {r} rank(s) {got['steps_per_s']:8.2f} steps/s")
                rec = run_md(MdRequest(where, cells, steps, 1, ("--nstcalcenergy", "100", *extra))).records[0]
                ours[r].append(rec)
                _say(f"run {i + 1}/{reps}: bench.md {r} rank(s) {rec['steps_per_s']:8.2f} steps/s")
    return summary(lam, ours)


def summary(lam: dict[int, list[dict[str, Any]]], ours: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    sps = {f"{code}_{r}": Figure.of([x["steps_per_s"] for x in runs[r]])
           for code, runs in (("lammps", lam), ("md", ours)) for r in RANKS}
    per_core = Figure.of([o["steps_per_s"] / m["steps_per_s"] for o, m in zip(ours[1], lam[1])])
    cpu = {f"lammps_{r}": Figure.of([x["cpu_use"] or 1.0 for x in lam[r]]) for r in RANKS}
    cpu.update({f"md_{r}": Figure.of([_cpu_use(x) for x in ours[r]]) for r in RANKS})
    per_cpu_s = Figure.of([(o["steps_per_s"] / _cpu_use(o)) / (m["steps_per_s"] / (m["cpu_use"] or 1.0))
                           for o, m in zip(ours[1], lam[1])])
    eff = {code: Figure.of([b["steps_per_s"] / (2 * a["steps_per_s"]) for a, b in zip(runs[1], runs[2])])
           for code, runs in (("lammps", lam), ("md", ours))}
    e_lmp = [x["epair0"] for r in RANKS for x in lam[r]]
    e_md = [x["e0_lj_unshifted_per_atom"] for r in RANKS for x in ours[r]]
    pairs_lmp = [x["pairs"] for r in RANKS for x in lam[r] if x["pairs"]]
    pairs_md = [sum(p["pairs"] for p in x["per_rank"]) for r in RANKS for x in ours[r]]
    same_e = all(f"{e:.7f}" == f"{e_lmp[0]:.7f}" for e in e_md) and len(set(e_lmp)) == 1
    pair_dev = max(abs(p / pairs_lmp[0] - 1) for p in pairs_md + pairs_lmp) if pairs_lmp else float("nan")
    return {"steps_per_s": sps, "per_core": per_core, "per_cpu_second": per_cpu_s, "cpu_use": cpu,
            "efficiency": eff, "epair0_lammps": e_lmp[0],
            "epair0_md": e_md[0], "same_epair0": same_e, "pairs_lammps": pairs_lmp, "pairs_md": pairs_md,
            "pairs_dev": pair_dev, "same_work": same_e and pair_dev < 0.01, "reps": len(lam[1]),
            "atoms": ours[1][0]["atoms"], "steps": ours[1][0]["steps"],
            "runs": {"lammps": [{k: x[k] for k in ("ranks", "steps_per_s", "sections_s", "cpu_use")} for r in RANKS
                                for x in lam[r]],
                     "md": [{k: x[k] for k in ("ranks", "steps_per_s", "timings_mean_s", "comm_share")} for r in RANKS
                            for x in ours[r]]}}


def _cpu_use(rec: dict[str, Any]) -> float:
    """CPU time / wall time of the timed loop, mean over the ranks (as LAMMPS's ``% CPU use``)."""
    ranks = rec["per_rank"]
    return sum(r.get("cpu_s", r["wall_s"]) / r["wall_s"] for r in ranks) / len(ranks)


def print_summary(s: dict[str, Any]) -> None:
    f, eff = s["steps_per_s"], s["efficiency"]
    print(f"# MD: {s['atoms']} atoms, {s['steps']} steps, 1 node, shared memory; {s['reps']} alternating "
          "repetition(s); steps/s median (min-max)")
    for r in RANKS:
        print(f"LAMMPS   {r} rank(s): {f[f'lammps_{r}'].short()}")
        print(f"bench.md {r} rank(s): {f[f'md_{r}'].short()}")
    print(f"per core, bench.md / LAMMPS (run pair by run pair): {s['per_core'].short('.3f')}")
    cpu = s["cpu_use"]
    print("CPU use (CPU time / wall time; below 100 % a process waited for a core): " +
          ", ".join(f"{'LAMMPS' if k.startswith('lammps') else 'bench.md'} {k[-1]} rank(s) {100 * v.median:.0f} %"
                    for k, v in cpu.items()) +
          f"; per CPU-second, bench.md / LAMMPS on 1 rank: {s['per_cpu_second'].short('.3f')}")
    print(f"2-rank strong-scaling efficiency: bench.md {100 * eff['md'].median:.1f} % "
          f"({100 * eff['md'].min:.1f}-{100 * eff['md'].max:.1f}), LAMMPS {100 * eff['lammps'].median:.1f} % "
          f"({100 * eff['lammps'].min:.1f}-{100 * eff['lammps'].max:.1f})")
    print(f"same work: step-0 E_pair/atom LAMMPS {s['epair0_lammps']:.7f}, bench.md {s['epair0_md']:.10f} "
          f"({'equal' if s['same_epair0'] else 'DIFFERENT'}); list pairs at the last rebuild LAMMPS "
          f"{min(s['pairs_lammps'], default=0)}-{max(s['pairs_lammps'], default=0)}, bench.md "
          f"{min(s['pairs_md'])}-{max(s['pairs_md'])} (within {100 * s['pairs_dev']:.2f} %): "
          f"{'yes' if s['same_work'] else 'NO'}")
    note = wide_note([(k, v) for k, v in f.items()], "md vs lammps")
    if note:
        print(note)
    out = {k: (v.to_json() if isinstance(v, Figure) else v) for k, v in s.items()}
    out["steps_per_s"] = {k: v.to_json() for k, v in f.items()}
    out["efficiency"] = {k: v.to_json() for k, v in eff.items()}
    out["cpu_use"] = {k: v.to_json() for k, v in cpu.items()}
    print("MD-LAMMPS-JSON " + json.dumps(out))
