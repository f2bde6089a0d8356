"""Latency across the network against shared memory, as ratios, through real mnp jobs on local nodes.

    python -m bench.osu.compare [-m [MIN:]MAX] [-i ITER] [-x WARMUP] [--path c|numba|mpi4py] [--reps N]
    python -m bench.osu.compare --paths [...]     # numba and mpi4py against each other, on both placements

Runs osu latency on 1 node x 2 ranks (shared memory) and on 2 nodes x 1 rank (the network), ``--reps`` jobs
each (:func:`bench.osu.runs.run_osu`), and prints network/shm per size from the medians, with the ratio's range
(the min and max of each side) beside it. ``--paths``: mpi4py/numba per size and the difference in microseconds
per message. ``mnp bench fabric`` does all of it, with bandwidth, MD and a report.
"""

from __future__ import annotations

import argparse
import sys

from bench.jobs import Nodes
from bench.osu.runs import OsuFigures, OsuRequest, run_osu

SHM, NET = Nodes(1, 2, "shm"), Nodes(2, 1, "tcp")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.osu.compare", description="osu latency across the network "
                                 "against shared memory (ratios), or numba against mpi4py, as mnp jobs.")
    ap.add_argument("-m", dest="sizes", metavar="[MIN:]MAX")
    ap.add_argument("-i", dest="iterations", type=int, metavar="ITER")
    ap.add_argument("-x", dest="warmup", type=int, metavar="WARMUP")
    ap.add_argument("--path", choices=("numba", "mpi4py"), default="numba")
    ap.add_argument("--paths", action="store_true", help="compare mpi4py with numba instead (both placements)")
    ap.add_argument("--reps", type=int, default=3, help="jobs per figure; medians with min and max (3)")
    a = ap.parse_args(argv)

    def run(where: Nodes, path: str) -> OsuFigures:
        return run_osu(OsuRequest("latency", where, path, a.sizes, a.iterations, a.warmup, reps=a.reps))

    if a.paths:
        got = {(w, p): run(where, p) for w, where in (("shm", SHM), ("tcp", NET)) for p in ("mpi4py", "numba")}
        print(f"# osu latency, mpi4py/numba and mpi4py - numba (us per message), medians of {a.reps} job(s)")
        print(f"{'# Size':<10}{'shm ratio':>14}{'shm diff(us)':>14}{'tcp ratio':>14}{'tcp diff(us)':>14}")
        ref = got["shm", "numba"]
        for k, s in enumerate(ref.sizes):
            cols = ""
            for w in ("shm", "tcp"):
                py, nb = got[w, "mpi4py"].figures[k].median, got[w, "numba"].figures[k].median
                cols += f"{py / nb:14.2f}{py - nb:14.2f}"
            print(f"{s:<10d}{cols}")
        return 0
    shm, net = run(SHM, a.path), run(NET, a.path)
    print(f"# osu latency, network ({net.transport}, 2 nodes x 1 rank) / shared memory (1 node x 2 ranks), call "
          f"path {a.path}, medians of {a.reps} job(s); range: slowest and fastest pairing of the runs")
    print(f"{'# Size':<10}{net.transport + '/shm':>14}{'range':>18}")
    for s, n, m in zip(shm.sizes, net.figures, shm.figures):
        print(f"{s:<10d}{n.median / m.median:14.2f}{f'{n.min / m.max:.2f}-{n.max / m.min:.2f}':>18}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
