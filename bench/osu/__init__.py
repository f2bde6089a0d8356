"""OSU-style MPI micro-benchmarks in Python, mnp's port of the OSU Micro-Benchmarks 7.4 methodology.

Run as an mnp job (``.venv/bin/mnp launch bench/osu-latency.yaml``) or directly under any MPI launcher::

    python -m bench.osu latency|bw|bibw|allreduce [-m [MIN:]MAX] [-i ITER] [-x WARMUP] [-W WINDOW] [-f]
                        [--path mpi4py|numba]

Layout: ``suite`` holds the registry, options and records (no MPI); ``benchmarks`` the four registered
benchmarks (the methodology: sizes, barriers, what is timed, the arithmetic); ``callpath`` the interface and tags
of a call path (the timed loops), ``paths`` the mpi4py one and the choice between paths, ``numba_path`` the numba
one; ``report`` the OSU text and the ``OSU-JSON`` line; ``__main__`` the command, which is the only place that
prints; ``compare`` runs the shm and network jobs through ``mnp launch``.
MPI and numba are imported only when a benchmark runs, so ``--help`` is instant.
"""

from bench.osu.suite import BENCHMARKS, Options, Result, Row, benchmark

__all__ = ["BENCHMARKS", "Options", "Result", "Row", "benchmark"]
