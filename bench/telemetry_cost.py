"""What one telemetry sample pass costs, and what each memory measure says, on N real MPI ranks.

``python -m bench.telemetry_cost --ranks 8`` starts ``mpiexec -n 8`` (the MPICH beside this Python) of ranks that
hold ``--mem`` MiB each, have MPICH's /dev/shm segment mapped (MPI_Init), and wait; then times
:meth:`mnp.node.telemetry.Sampler.sample` over them (this process is the root, as the agent is on a node) and one
pass of psutil's ``memory_full_info`` (USS/PSS, from ``/proc/PID/smaps``) over the same processes, and prints one
JSON object: per-pass milliseconds of CPU time (this thread's; median, max) and the memory sums (RSS,
RSS - shared, PSS, USS) in MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

# each rank holds its memory, sleeping, until the cue file exists; then all leave through MPI_Finalize, which removes
# MPICH's /dev/shm segment (killed ranks would leave it behind)
RANK = ("import os, sys, time\nfrom mpi4py import MPI\nb = bytearray(int(sys.argv[1]) << 20)\n"
        "for i in range(0, len(b), 4096): b[i] = 1\nMPI.COMM_WORLD.Barrier()\n"
        "if MPI.COMM_WORLD.rank == 0: print('up', flush=True)\n"
        "while not os.path.exists(sys.argv[2]): time.sleep(0.05)\n")


def main(argv: list[str] | None = None) -> int:
    import psutil

    from mnp.node.telemetry import Sampler

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=8)
    ap.add_argument("--mem", type=int, default=32, help="MiB each rank holds")
    ap.add_argument("--passes", type=int, default=50)
    a = ap.parse_args(argv)
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    cue = tempfile.mkdtemp(prefix="mnp-telemetry-cost-")
    done = os.path.join(cue, "done")
    job = subprocess.Popen([mpiexec, "-n", str(a.ranks), sys.executable, "-c", RANK, str(a.mem), done],
                           stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert job.stdout is not None
        if job.stdout.readline().strip() != "up":
            raise SystemExit("the ranks did not start")
        s = Sampler(1.0, shm_private=True)
        samples = []
        for _ in range(a.passes):
            samples.append(s.sample())
            time.sleep(0.01)
        procs = psutil.Process().children(recursive=True)
        full_ms, full = [], []
        for _ in range(a.passes):
            t0 = time.thread_time()
            full = [p.memory_full_info() for p in procs]
            full_ms.append((time.thread_time() - t0) * 1e3)
        plain = [p.memory_info() for p in procs]
        mib = 1 << 20
        cost = [x.cost_s * 1e3 for x in samples]
        print(json.dumps({
            "ranks": a.ranks, "processes": samples[-1].procs, "passes": a.passes,
            "sample_ms": {"median": round(statistics.median(cost), 3), "max": round(max(cost), 3)},
            "memory_full_info_ms": {"median": round(statistics.median(full_ms), 3), "max": round(max(full_ms), 3)},
            "mib": {"rss": round(sum(p.rss for p in plain) / mib, 1),
                    "rss_minus_shared": round(samples[-1].rss / mib, 1),
                    "pss": round(sum(f.pss for f in full) / mib, 1),
                    "uss": round(sum(f.uss for f in full) / mib, 1)}}))
    finally:
        left = psutil.Process().children(recursive=True)
        open(done, "w").close()  # the ranks' cue to finish
        try:
            job.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, 15)
            job.wait(30)
        shutil.rmtree(cue, ignore_errors=True)
        for p in left:  # anything that left mpiexec's process group
            try:
                p.kill()
            except psutil.Error:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
