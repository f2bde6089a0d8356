"""Latency across the network against shared memory, as ratios, through real mnp jobs on local nodes.

    python -m bench.osu.compare [-m [MIN:]MAX] [-i ITER] [-x WARMUP] [--path c|numba|mpi4py] [--reps N]
    python -m bench.osu.compare --paths [...]     # numba and mpi4py against each other, on both placements
    python -m bench.osu.compare --against-c [-m 8] [--reps N] [--transport shm|tcp]   # each path / C

Runs osu latency on 1 node x 2 ranks (shared memory) and on 2 nodes x 1 rank (the network), ``--reps`` jobs
each (:func:`bench.osu.runs.run_osu`), and prints network/shm per size from the medians, with the ratio's range
(the min and max of each side) beside it. ``--paths``: mpi4py/numba per size and the difference in microseconds
per message. ``--against-c``: the C reference (``bench/c/osu_ref.c``, OMB's loop), mpi4py and numba alternating,
one job each per repetition, on one placement; per size each path's latency / C's, taken run by run (median,
min, max). ``mnp bench fabric`` does all of it, with bandwidth, MD and a report.
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
    ap.add_argument("--against-c", action="store_true", help="mpi4py and numba against the C reference, "
                    "alternating (one placement: --transport)")
    ap.add_argument("--transport", choices=("shm", "tcp"), default="shm", help="with --against-c (shm)")
    ap.add_argument("--reps", type=int, default=3, help="jobs per figure; medians with min and max (3)")
    a = ap.parse_args(argv)
    if a.against_c:
        return against_c(a.sizes, a.iterations, a.warmup, SHM if a.transport == "shm" else NET, a.reps)

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


def against_c(sizes: str | None, iters: int | None, warmup: int | None, where: Nodes, reps: int) -> int:
    from bench.cref import c_reference
    from bench.spread import Figure

    binary, how = c_reference()
    if binary is None:
        print(f"osu compare: no C reference: {how}", file=sys.stderr)
        return 2
    paths = ("c", "mpi4py", "numba")
    runs: dict[str, list[OsuFigures]] = {p: [] for p in paths}
    for i in range(reps):
        for p in paths:
            runs[p].append(run_osu(OsuRequest("latency", where, p, sizes, iters, warmup, reps=1, c_binary=binary)))
            print(f"run {i + 1}/{reps}: {p} done", file=sys.stderr, flush=True)
    place = "1 node x 2 ranks, shared memory" if where.nodes == 1 else "2 nodes x 1 rank, tcp"
    print(f"# osu latency ({place}): each path / C, run by run over {reps} alternating repetition(s); "
          "latency medians in us")
    print(f"{'# Size':<10}{'C':>10}{'mpi4py':>10}{'numba':>10}{'mpi4py/C (min-max)':>26}{'numba/C (min-max)':>26}")
    sizes_done = runs["c"][0].sizes
    for k, size in enumerate(sizes_done):
        med = {p: Figure.of([r.figures[k].median for r in runs[p]]) for p in paths}
        ratio = {p: Figure.of([r.figures[k].median / c.figures[k].median for r, c in zip(runs[p], runs["c"])])
                 for p in ("mpi4py", "numba")}
        print(f"{size:<10d}{med['c'].median:10.2f}{med['mpi4py'].median:10.2f}{med['numba'].median:10.2f}"
              f"{ratio['mpi4py'].short('.3f'):>26}{ratio['numba'].short('.3f'):>26}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
