"""OSU Micro-Benchmarks 7.4 in Python: OMB's methodology and its output, byte for byte.

Run through ``mnp bench osu`` (repeated jobs, spread, progress, ``--json``), as an mnp job
(``mnp launch bench/osu-latency.yaml``) or directly under any MPI launcher::

    python -m bench.osu latency|bw|bibw|allreduce [-m [MIN:]MAX] [-i ITER] [-x WARMUP] [-W WINDOW] [-f]
                        [--path mpi4py|numba] [--json] [--progress]

Layout: ``suite`` holds OMB's benchmark specs, options and records (no MPI, no NumPy); ``benchmarks`` the four
registered benchmarks (the methodology: sizes, barriers, what is timed, the arithmetic); ``buffers`` OMB's
buffers; ``callpath`` the interface and tags of a call path (the timed loops), ``paths`` the mpi4py one and the
choice between paths, ``numba_path`` the numba one; ``facts`` where a figure came from; ``report`` OMB's text and
the JSON record; ``omb`` reads OMB text; ``__main__`` the command, the only place that prints; ``runs`` repeats a
benchmark as mnp jobs (``mnp bench osu``); ``compare`` network against shared memory. MPI and numba are imported
only when a benchmark runs, so ``--help`` is instant.
"""

from bench.osu.suite import BENCHMARKS, Options, Result, Row, benchmark

__all__ = ["BENCHMARKS", "Options", "Result", "Row", "benchmark"]
