"""Latency across the network against shared memory, as ratios, through real ``mnp launch`` runs.

    python -m bench.osu.compare [-m [MIN:]MAX] [-i ITER] [-x WARMUP] [--path mpi4py|numba] [--reps N]
    python -m bench.osu.compare --paths [...]     # numba against mpi4py on both jobs

Runs ``bench/osu-latency-shm.yaml`` (1 node x 2 ranks) and ``bench/osu-latency.yaml`` (2 nodes x 1 rank, tcp)
with ``mnp launch --json``, the options appended to each job's command, alternating, ``--reps`` times; takes the
median of each size over the repetitions and prints network/shm per size. Ratios only: this machine is shared
and noisy, absolute microseconds from it mean little. ``--paths`` runs each job with both call paths and prints
mpi4py/numba per size and the difference in microseconds per message (half round trip): what the Python
interpreter in the timing loop costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.jobs import ROOT, launch_job
from bench.osu.report import parse_json_lines

SHM_JOB, NET_JOB = ROOT / "bench" / "osu-latency-shm.yaml", ROOT / "bench" / "osu-latency.yaml"


def launch(job: Path, extra: list[str], tmp: Path) -> dict[str, Any]:
    """Run ``job`` with ``extra`` appended to its command; its OSU-JSON record plus the job's id."""
    return launch_job(job, extra, tmp, parse_json_lines, "OSU-JSON")


def medians(runs: list[dict[str, Any]]) -> dict[int, float]:
    """Per size, the median value over repeated runs."""
    return {s: statistics.median(r["values"][r["sizes"].index(s)] for r in runs) for s in runs[0]["sizes"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.osu.compare", description="Latency across the network against "
                                 "shared memory (ratios), or numba against mpi4py, through mnp launch.")
    ap.add_argument("-m", dest="sizes", metavar="[MIN:]MAX")
    ap.add_argument("-i", dest="iterations", metavar="ITER")
    ap.add_argument("-x", dest="warmup", metavar="WARMUP")
    ap.add_argument("--path", choices=("mpi4py", "numba"), default="mpi4py")
    ap.add_argument("--paths", action="store_true", help="compare numba with mpi4py instead (both jobs)")
    ap.add_argument("--reps", type=int, default=1, help="repetitions, alternating; medians per size (1)")
    a = ap.parse_args(argv)
    common = [f for flag, v in (("-m", a.sizes), ("-i", a.iterations), ("-x", a.warmup)) if v for f in (flag, v)]
    runs = ([("shm", SHM_JOB, p) for p in ("mpi4py", "numba")] + [("net", NET_JOB, p) for p in ("mpi4py", "numba")]
            if a.paths else [("shm", SHM_JOB, a.path), ("net", NET_JOB, a.path)])
    got: dict[tuple[str, str], list[dict[str, Any]]] = {(where, p): [] for where, _, p in runs}
    with tempfile.TemporaryDirectory(prefix="osu-compare-") as tmp:
        for _ in range(a.reps):
            for where, job, p in runs:
                got[where, p].append(launch(job, [*common, "--path", p], Path(tmp)))
    med = {k: medians(v) for k, v in got.items()}
    provider = got[next(k for k in got if k[0] == "net")][0]["env"].get("fi_provider") or "net"
    ids = " ".join(r["job_id"] for v in got.values() for r in v)
    if a.paths:
        print(f"# osu latency, call paths: mpi4py/numba and mpi4py - numba (us per message), median of "
              f"{a.reps} run(s); jobs {ids}")
        print(f"{'# Size':<10}{'shm ratio':>20}{'shm diff(us)':>20}{provider + ' ratio':>20}"
              f"{provider + ' diff(us)':>20}")
        for s in med["shm", "mpi4py"]:
            cols = []
            for where in ("shm", "net"):
                py, nb = med[where, "mpi4py"][s], med[where, "numba"][s]
                cols += [f"{py / nb:20.2f}", f"{py - nb:20.2f}"]
            print(f"{s:<10d}{''.join(cols)}")
    else:
        print(f"# osu latency, network ({provider}, {NET_JOB.name}) / shared memory ({SHM_JOB.name}), call path "
              f"{a.path}, median of {a.reps} run(s); ratios only; jobs {ids}")
        print(f"{'# Size':<16}{provider + '/shm':>14}")
        for s, shm in med["shm", a.path].items():
            print(f"{s:<10d}{med['net', a.path][s] / shm:20.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
