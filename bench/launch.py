"""Launch benchmark: mnp against MPICH's own mpiexec (Hydra), and mnp's scaling with node count.

Run: ``.venv/bin/python bench/launch.py [--reps 5] [--scale 4,8,16,32]`` (root: isolated local nodes).

Part 1 times the whole ``mnp launch`` of an mpi4py hello on 4 local nodes x 2 ranks against the wheel's
``mpiexec`` running the same program on the same kind of isolated nodes: for Hydra the benchmark creates the
nodes with mnp's own local-cluster code (same namespaces, bridge, /dev/shm) and hands mpiexec a remote-shell agent
(``hydra_node_exec.py``) that starts each proxy inside its node, then tears the nodes down; both are timed from
start to the end of teardown, in alternating runs, and the ratio of medians is printed (target <= 1.0).

Part 2 times ``mnp launch`` of a 1-rank-per-node hello on 4, 8, 16 and 32 nodes and prints t(N)/t(4) (target
t(32)/t(4) <= 3) and the agents' peak resident memory per node from the job record (target <= 40 MB), twice: with
the mpi4py hello (each rank starts a Python interpreter and imports mpi4py: on a 2-core machine that cost grows
with N whatever the launcher does) and with the C hello built by CMake against the same MPICH (where what grows
with N is mostly the launcher's own work).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mnp.cluster.local import LocalCluster, clean_stale, namespaces_available  # noqa: E402 - after the path
from mnp.records import new_job_id  # noqa: E402

HELLO = [sys.executable, str(ROOT / "examples" / "hello.py")]
TRANSPORT = {"MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "tcp", "FI_TCP_IFACE": "eth0", "PYTHONUNBUFFERED": "1"}


def build_c_hello(tmp: Path) -> list[str]:
    """bench/c/hello.c through CMake with the venv's MPICH mpicc."""
    build = tmp / "build"
    mpicc = Path(sys.executable).parent / "mpicc"
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), f"-DCMAKE_C_COMPILER={mpicc}"], check=True,
                   capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "--target", "mpi_hello"], check=True, capture_output=True)
    return [str(build / "mpi_hello")]


def time_mnp(home: Path, nodes: int, rpn: int, command: list[str] | None = None) -> tuple[float, dict]:
    job = home / f"hello-{nodes}x{rpn}.yaml"
    job.write_text(json.dumps({"name": "bench-hello", "nodes": nodes, "ranks_per_node": rpn,
                               "command": command or HELLO,
                               "mpi": "mpich", "transport": "tcp"}))
    env = {**os.environ, "MNP_HOME": str(home)}
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "mnp", "launch", "--json", str(job)], capture_output=True, text=True,
                       env=env, check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"mnp launch failed ({p.returncode}): {p.stderr[-2000:]}")
    job_id = json.loads(p.stdout)["job_id"]
    st = subprocess.run([sys.executable, "-m", "mnp", "status", "--json", job_id], capture_output=True, text=True,
                        env=env, check=True)
    return wall, json.loads(st.stdout)["info"]


def time_hydra(tmp: Path, nodes: int, rpn: int, command: list[str] | None = None) -> float:
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    t0 = time.perf_counter()
    cluster = LocalCluster(new_job_id(), nodes)
    try:
        cluster.create(512 << 20)
        table = {n.address: cluster.node_argv(n.index, []) for n in cluster.nodes}
        spec = tmp / "nodes.json"
        spec.write_text(json.dumps(table))
        genv = [a for k, v in TRANSPORT.items() for a in ("-genv", k, v)]
        hosts = ",".join(f"{n.address}:{rpn}" for n in cluster.nodes)
        p = subprocess.run([mpiexec, "-launcher", "ssh", "-launcher-exec", str(ROOT / "bench" / "hydra_node_exec.py"),
                            "-hosts", hosts, "-n", str(nodes * rpn), "-iface", cluster.bridge, *genv,
                            *(command or HELLO)],
                           capture_output=True, text=True, env={**os.environ, "MNP_BENCH_NODES": str(spec),
                                                                "HYDRA_LAUNCHER_AUTOFORK": "0"}, cwd=ROOT, check=False)
        ranks = p.stdout.count("hello from rank") + p.stdout.count("C-HELLO")  # Hydra may merge lines
        if p.returncode != 0 or ranks != nodes * rpn:
            raise SystemExit(f"mpiexec failed ({p.returncode}): {p.stdout[-1000:]} {p.stderr[-2000:]}")
    finally:
        cluster.teardown()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--scale", default="4,8,16,32")
    args = ap.parse_args()
    if not namespaces_available():
        raise SystemExit("bench/launch.py needs root (isolated local nodes)")
    clean_stale()
    with tempfile.TemporaryDirectory(prefix="mnp-bench-") as d:
        tmp = Path(d)
        time_mnp(tmp, 4, 2)  # warm the page cache for both
        time_hydra(tmp, 4, 2)
        ours, theirs = [], []
        for _ in range(args.reps):
            ours.append(time_mnp(tmp, 4, 2)[0])
            theirs.append(time_hydra(tmp, 4, 2))
        m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
        print("# mnp launch vs mpiexec (Hydra): mpi4py hello, 4 isolated local nodes x 2 ranks, "
              f"{args.reps} alternating runs each, whole command incl. node bring-up and teardown")
        print(f"mnp      median {m_ours:6.3f} s  (min {min(ours):.3f}, max {max(ours):.3f})")
        print(f"mpiexec  median {m_theirs:6.3f} s  (min {min(theirs):.3f}, max {max(theirs):.3f})")
        print(f"ratio mnp/mpiexec = {m_ours / m_theirs:.2f}  (target <= 1.0)")

        for label, command in (("mpi4py hello", HELLO), ("C hello (CMake, MPICH)", build_c_hello(tmp))):
            print(f"\n# scaling: {label}, 1 rank per node, whole mnp launch")
            print(f"{'nodes':>5}  {'median s':>8}  {'t(N)/t(4)':>9}  {'bring-up s':>10}  {'agent max RSS MB':>16}"
                  f"  {'mpiexec s':>9}  {'mpiexec t(N)/t(4)':>17}")
            base = hbase = None
            for n in [int(x) for x in args.scale.split(",")]:
                runs, hydra = [], []
                for _ in range(max(1, args.reps // 2)):  # alternating, as in part 1
                    runs.append(time_mnp(tmp, n, 1, command))
                    hydra.append(time_hydra(tmp, n, 1, command))
                t, h = statistics.median(r[0] for r in runs), statistics.median(hydra)
                info = runs[-1][1]
                rss = max(v for v in info.get("agent_maxrss_kb", {}).values() if v) / 1024
                base, hbase = base or t, hbase or h
                print(f"{n:>5}  {t:8.3f}  {t / base:9.2f}  {info['timings'].get('bringup_s', 0):10.3f}  "
                      f"{rss:16.1f}  {h:9.3f}  {h / hbase:17.2f}")


if __name__ == "__main__":
    main()
