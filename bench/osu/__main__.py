"""``python -m bench.osu BENCHMARK [options]``: parse, run the registered benchmark, print on rank 0.

The only module that prints: OMB 7.4's exact text (then mnp's ``# mnp:`` comment block), or with ``--json`` one
JSON object; with ``--progress``, ``osu <name>: sizes <done>/<total>`` lines on stderr as sizes finish. MPI is
initialised after the options are parsed, so ``--help`` and option errors never start MPI; numba is imported only
for ``--path numba``.
"""

from __future__ import annotations

import argparse
import sys

from bench.osu import benchmarks as _registered  # noqa: F401  (fills BENCHMARKS)
from bench.osu.report import json_text, text_lines
from bench.osu.suite import BENCHMARKS, PATHS, Options, parse_size_range

PROGRESS = "osu {name}: sizes {done}/{total} ({size} B)"


def parse(argv: list[str] | None = None) -> tuple[str, Options, bool, bool]:
    ap = argparse.ArgumentParser(prog="python -m bench.osu", description="OSU Micro-Benchmarks 7.4 in Python "
                                 "(mnp's port): OMB's methodology and output; only rank 0 prints.")
    ap.add_argument("benchmark", choices=list(BENCHMARKS))
    ap.add_argument("-m", dest="sizes", metavar="[MIN:]MAX", help="message sizes in bytes (default: OMB's)")
    ap.add_argument("-i", dest="iterations", type=int, metavar="ITER",
                    help="timed iterations per size (default: OMB's, by size)")
    ap.add_argument("-x", dest="warmup", type=int, metavar="WARMUP", help="warm-up iterations per size")
    ap.add_argument("-W", dest="window", type=int, default=64, metavar="WINDOW", help="bw/bibw window (64)")
    ap.add_argument("-f", dest="full", action="store_true", help="collectives: min, max and iterations too")
    ap.add_argument("--path", choices=PATHS, default="mpi4py", help="how MPI is called (default mpi4py)")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of OMB's text")
    ap.add_argument("--progress", action="store_true", help="a line on stderr as each size finishes")
    a = ap.parse_args(argv)
    lo = hi = None
    if a.sizes:
        try:
            lo, hi = parse_size_range(a.sizes)
        except ValueError as e:
            ap.error(str(e))
    if a.iterations is not None and a.iterations < 1 or a.warmup is not None and a.warmup < 0 or a.window < 1:
        ap.error("-i and -W must be at least 1, -x at least 0")
    return a.benchmark, Options(lo, hi, a.iterations, a.warmup, a.window, a.full, a.path), a.json, a.progress


def main(argv: list[str] | None = None) -> int:
    name, opts, as_json, progress = parse(argv)
    import mpi4py

    # OMB calls MPI_Init: MPI_THREAD_SINGLE. mpi4py asks for MPI_THREAD_MULTIPLE unless told, and MPICH then
    # takes its thread locks in every call and in the progress loop (8 B ping-pong about 0.07 us slower).
    mpi4py.rc.thread_level = "single"
    from mpi4py import MPI

    from bench.osu.benchmarks import UsageError, run

    rank = MPI.COMM_WORLD.Get_rank()

    def show(done: int, total: int, size: int) -> None:
        if progress and rank == 0:
            print(PROGRESS.format(name=name, done=done, total=total, size=size), file=sys.stderr, flush=True)

    try:
        result = run(name, opts, progress=show)
    except UsageError as e:  # raised alike on every rank, before any communication
        if rank == 0:
            print(f"osu: error: {e}", file=sys.stderr, flush=True)
        MPI.COMM_WORLD.Barrier()  # no rank exits before rank 0 has said why
        return 2
    if rank == 0:
        spec = BENCHMARKS[name]
        print(json_text(result, spec) if as_json else "\n".join(text_lines(result, spec, opts.full)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
