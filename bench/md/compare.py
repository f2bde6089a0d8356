"""The same MD system on shared memory and across the network, through real ``mnp launch --json`` runs.

    python -m bench.md.compare [--reps N] [-- extra bench.md options, e.g. --cells 12 --steps 100]

Runs ``bench/md-shm.yaml`` (1 node x 2 ranks) and ``bench/md-net.yaml`` (2 nodes x 1 rank, tcp), alternating,
``--reps`` times, options appended to both commands; prints each run's steps/s and communication share, the
median ratio of steps/s (network/shm), and checks that both ran the same system (same step-0 energy). Ratios
only: this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.jobs import ROOT, launch_job
from bench.md.report import parse_json_lines

JOBS = {"shm": ROOT / "bench" / "md-shm.yaml", "net": ROOT / "bench" / "md-net.yaml"}


def launch(job: Path, extra: list[str], tmp: Path) -> dict[str, Any]:
    """Run ``job`` with ``extra`` appended to its command; its MD-JSON record plus the job's id."""
    return launch_job(job, extra, tmp, parse_json_lines, "MD-JSON")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.md.compare", description="MD steps/s across the network "
                                 "against shared memory (ratio), through mnp launch.")
    ap.add_argument("--reps", type=int, default=1, help="repetitions, alternating; median ratio (1)")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="options for python -m bench.md (after --)")
    a = ap.parse_args(argv)
    extra = a.extra[1:] if a.extra[:1] == ["--"] else a.extra
    got: dict[str, list[dict[str, Any]]] = {"shm": [], "net": []}
    with tempfile.TemporaryDirectory(prefix="md-compare-") as tmp:
        for _ in range(a.reps):
            for where, job in JOBS.items():
                got[where].append(launch(job, extra, Path(tmp)))
    r0 = got["shm"][0]
    print(f"# md: {r0['atoms']} atoms, {r0['steps']} steps, dt {r0['dt_tau']} tau, rf {r0['rf']}; "
          f"{a.reps} run(s) each; jobs {' '.join(r['job_id'] for v in got.values() for r in v)}")
    print(f"# {'where':<5} {'ranks':>5} {'nodes':>5} {'steps/s':>10} {'ns/day':>10} {'comm %':>7} {'E0 LJ/atom':>16} "
          f"{'drift rel':>10}")
    for where, runs in got.items():
        for r in runs:
            print(f"  {where:<5} {r['ranks']:5d} {r['nodes']:5d} {r['steps_per_s']:10.2f} {r['ns_per_day']:10.3f} "
                  f"{100 * r['comm_share']:7.1f} {r['e0_lj_unshifted_per_atom']:16.10f} {r['drift_rel']:10.2e}")
    e0 = [r["e0_per_atom"]["pot"] for v in got.values() for r in v]
    spread = (max(e0) - min(e0)) / abs(e0[0])
    ratio = statistics.median(n["steps_per_s"] / s["steps_per_s"] for s, n in zip(got["shm"], got["net"]))
    share = {w: statistics.median(r["comm_share"] for r in v) for w, v in got.items()}
    print(f"steps/s network/shm: {ratio:.3f}   communication share: shm {100 * share['shm']:.1f}%, "
          f"net {100 * share['net']:.1f}%   step-0 potential spread {spread:.1e} (same system: "
          f"{'yes' if spread < 1e-9 else 'NO'})")
    print("MD-COMPARE-JSON " + json.dumps({"ratio_steps_per_s_net_over_shm": ratio, "comm_share": share,
                                           "e0_spread_rel": spread, "runs": {w: [
                                               {k: r[k] for k in ("job_id", "steps_per_s", "comm_share", "wall_s")}
                                               for r in v] for w, v in got.items()}}))
    return 0 if spread < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
