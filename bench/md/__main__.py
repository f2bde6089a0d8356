"""``python -m bench.md [options]``: parse, run the registered MD benchmark, print on rank 0 only.

MPI starts after the options are parsed (``--help`` and option errors never start it); numba is imported only
by the run.
"""

from __future__ import annotations

import argparse
import json
import sys

from bench.md.system import Params


def parse(argv: list[str] | None = None) -> tuple[Params, bool, bool]:
    d = Params()
    ap = argparse.ArgumentParser(prog="python -m bench.md", description="GROMACS-like LJ (+ reaction field) MD "
                                 "on an fcc lattice, domain-decomposed over MPI ranks; rank 0 prints.")
    ap.add_argument("--cells", type=int, default=d.cells, help="fcc cells per side, 4 atoms each (20: in.lj)")
    ap.add_argument("--density", type=float, default=d.density)
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--nstlist", type=int, default=d.nstlist, help="steps between list rebuilds (20)")
    ap.add_argument("--skin", type=float, default=d.skin, help="Verlet buffer (0.3, as in.lj)")
    ap.add_argument("--rc", type=float, default=d.rc)
    ap.add_argument("--dt", type=float, default=d.dt, help="timestep in tau (0.005)")
    ap.add_argument("--temp", type=float, default=d.temp)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--rf", action="store_true", help="charges +-q and reaction-field electrostatics")
    ap.add_argument("--charge", type=float, default=d.charge)
    ap.add_argument("--eps-r", type=float, default=d.eps_r)
    ap.add_argument("--eps-rf", type=float, default=d.eps_rf, help="0 = infinity (default)")
    ap.add_argument("--nstcalcenergy", type=int, default=d.nstcalcenergy, help="steps between energies (10)")
    ap.add_argument("--decomp", choices=("3d", "x"), default=d.decomp, help="3d grid or x slabs")
    ap.add_argument("--json", action="store_true", help="one JSON object (the record) instead of the text")
    ap.add_argument("--progress", action="store_true", help="'md: steps N/M' lines on stderr while it runs")
    a = ap.parse_args(argv)
    if a.cells < 1 or a.steps < 1 or a.nstlist < 1 or a.nstcalcenergy < 1 or a.dt <= 0 or a.rc <= 0 or \
            a.skin < 0 or a.eps_r <= 0:
        ap.error("cells, steps, nstlist, nstcalcenergy must be >= 1; dt, rc, eps-r > 0; skin >= 0")
    return Params(cells=a.cells, density=a.density, rc=a.rc, skin=a.skin, nstlist=a.nstlist, dt=a.dt,
                  steps=a.steps, temp=a.temp, seed=a.seed, rf=a.rf, charge=a.charge, eps_r=a.eps_r,
                  eps_rf=a.eps_rf, nstcalcenergy=a.nstcalcenergy, decomp=a.decomp), a.json, a.progress


def main(argv: list[str] | None = None) -> int:
    p, as_json, progress = parse(argv)
    from mpi4py import MPI

    from bench.md.domain import UsageError
    from bench.md.engine import RUNS
    from bench.md.report import json_line, text_lines

    rank = MPI.COMM_WORLD.Get_rank()

    def show(done: int, steps: int) -> None:
        if progress and rank == 0:
            print(f"md: steps {done}/{steps}", file=sys.stderr, flush=True)

    try:
        rec = RUNS["md"](p, show)
    except UsageError as e:  # raised alike on every rank, before any communication
        if rank == 0:
            print(f"md: error: {e}", file=sys.stderr, flush=True)
        # No rank exits before rank 0 has said why: the first rank to exit non-zero makes mnp stop the others.
        MPI.COMM_WORLD.Barrier()
        return 2
    if rank == 0:
        print(json.dumps(rec, separators=(",", ":")) if as_json else "\n".join([*text_lines(rec), json_line(rec)]),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
