"""The same MD system on shared memory and across the network, through real mnp jobs on local nodes.

    python -m bench.md.compare [--reps N] [-- extra bench.md options, e.g. --cells 12 --steps 100]
    python -m bench.md.compare --lammps [--reps N] [--steps 500]    # against LAMMPS in.lj (bench.md.vs_lammps)

Runs the MD benchmark on 1 node x 2 ranks (shared memory) and on 2 nodes x 1 rank (tcp), ``--reps`` jobs each
(:func:`bench.md.runs.run_md`), and prints steps/s of both with min and max, the ratio network/shm of the medians
with its range, and whether both ran the same system (same step-0 energy). With ``--lammps``: LAMMPS in.lj and
bench.md alternating on 1 and 2 ranks of one node, per-core ratio and 2-rank efficiency
(:mod:`bench.md.vs_lammps`). ``mnp bench md`` and ``mnp bench fabric`` are the commands for users.
"""

from __future__ import annotations

import argparse
import json
import sys

from bench.jobs import Nodes
from bench.md.runs import MdRequest, run_md


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.md.compare", description="MD steps/s across the network "
                                 "against shared memory (ratio, with its range), as mnp jobs.")
    ap.add_argument("--reps", type=int, default=3, help="jobs per placement (3)")
    ap.add_argument("--cells", type=int, default=20)
    ap.add_argument("--steps", type=int, default=None, help="200; 500 (in.lj's) with --lammps")
    ap.add_argument("--lammps", action="store_true", help="against LAMMPS in.lj on 1 and 2 ranks of one node")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="more options for python -m bench.md (after --)")
    a = ap.parse_args(argv)
    extra = tuple(a.extra[1:] if a.extra[:1] == ["--"] else a.extra)
    if a.lammps:
        from bench.md import vs_lammps

        s = vs_lammps.run(a.cells, a.steps or 500, a.reps, extra)
        vs_lammps.print_summary(s)
        return 0 if s["same_work"] else 1
    a.steps = a.steps or 200
    shm = run_md(MdRequest(Nodes(1, 2, "shm"), a.cells, a.steps, a.reps, extra))
    net = run_md(MdRequest(Nodes(2, 1, "tcp"), a.cells, a.steps, a.reps, extra))
    e0 = [r["e0_per_atom"]["pot"] for r in shm.records + net.records]
    spread = (max(e0) - min(e0)) / abs(e0[0])
    s, n = shm.figure("steps_per_s"), net.figure("steps_per_s")
    for where, figs in (("shm", shm), ("net", net)):
        print(f"{where}: " + " | ".join(figs.text()[2:6]))
    print(f"steps/s network/shm: {n.median / s.median:.3f} (range {n.min / s.max:.3f}-{n.max / s.min:.3f}, "
          f"{a.reps} job(s) each); step-0 potential spread {spread:.1e} (same system: "
          f"{'yes' if spread < 1e-9 else 'NO'})")
    for note in filter(None, (shm.note(), net.note())):
        print(note)
    print("MD-COMPARE-JSON " + json.dumps({"ratio_steps_per_s_net_over_shm": n.median / s.median,
                                           "shm": shm.to_json(), "net": net.to_json(), "e0_spread_rel": spread}))
    return 0 if spread < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
