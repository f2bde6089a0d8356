"""Launch benchmark: mnp against MPICH's own mpiexec (Hydra), and mnp's scaling with node count.

Run: ``.venv/bin/python bench/launch.py [--reps 5] [--scale 4,8,16,32]`` (root: isolated local nodes), or with
``--slurm N`` or ``--ssh N`` (below).

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

SSH tree spawn mode (``--ssh-tree 8,64,128 [--width K]``) times ``mnp launch --hostfile`` of the C hello on N sshd
hosts with ``--tree-width K`` (mnp dials K hosts, their agents dial the rest with ``ssh``) against the star
(``--tree-width N``: mnp dials every host, 32 at once) and against ``mpiexec -launcher ssh``, alternating.

Pool scaling mode (``--pool-scale 8,128``) makes max(N) sshd hosts, starts one pool on all of them (not timed) and
times, alternating, ``mnp run --via pool`` on the first N hosts of ``hostname`` (bring-up, start, output and
goodbye, no MPI) and of the C hello, printing t(N)/t(smallest N) (the issue's target: t(128)/t(8) <= 4).

Slurm scaling mode (``--slurm-scale 8,128``) holds one Slurm allocation of max(N) namespace nodes, starts a pool
in it (not timed), and times, alternating, ``mnp run --via pool -N N`` against Slurm's own ``srun -N N`` (one
slurmstepd per node) of ``hostname`` and of the C hello (``srun --mpi=pmi2``), printing t(N)/t(smallest N) for
both: what the machine allows a launcher that is not mnp.

Tree mode (``--tree 8,32,64,128``) times the whole ``mnp launch`` of the C hello, 1 rank per node, on N isolated
local nodes with the control tree at width 32 and as a star (``--tree-width N``), alternating, and
prints from each job's record its bring-up, the frames the coordinator read and wrote, and the coordinator
process's CPU time (target: t(128)/t(8) <= 4).

Slurm mode (``--slurm 8`` or ``--slurm 8,32``; needs Slurm's Debian packages, which setup.sh installs) builds a real
Slurm cluster of namespace nodes (tests/slurmnodes.py: slurmctld, slurmd, munged), holds an allocation of N nodes
(``salloc --no-shell``) and, inside it, times ``mnp launch`` (agents through srun, 1 rank per node) against
``srun --mpi=pmi2`` running the same hello, in alternating runs, for the mpi4py and the C hello; it prints the
medians and the ratio (target: <= 1.5 at 8 nodes, <= 1.0 at 32). A third contender, ``mnp launch --via pool``,
runs on pool agents started once in the allocation before the first run (``mnp pool start``: one srun step that
stays), stopped at the end.

SSH mode (``--ssh 4`` or ``--ssh 4,8``) builds N hosts that run a stock OpenSSH server (tests/sshnodes.py: isolated
namespace hosts whose init is ``sshd``, a client key, their host keys in a known_hosts file) and times the whole
``mnp launch --hostfile`` of the mpi4py hello (1 rank per node, MPICH, tcp) against MPICH's own ``mpiexec
-launcher ssh -f HOSTFILE`` (Hydra: one ``ssh`` per host starting its proxy) on the same hosts, in alternating
runs. Both reach the hosts with one ssh_config (identity, known_hosts, user, strict host key checking, connect
timeout): mnp through ``--ssh-config``, Hydra's ``ssh`` through ``-F`` (a two-line wrapper given as
``-launcher-exec``). Every run must print a hello from every rank, each from a different ssh host's hostname. It
prints min/median/max of each, mnp's median bring-up (from its job record), the median CPU time spent on this
machine (the launcher and the ssh clients it waited for) and on the hosts (each host's sshd and every session it
reaped: the shells, agents or proxies, ranks), and the ratio of medians (target <= 1.0).
A third contender is ``mnp launch --via pool`` on the same hosts: their pool agents are started once before the
first run (``mnp pool start``, not timed, as a user starts a pool once for many jobs) and stopped at the end; each
job's agents are forked by them, with no SSH session per host and job.
``--baseline DIR`` adds another contender to the same alternation: the mnp of another checkout (``git archive
COMMIT | tar -x -C DIR``), coordinator and agents (a remote Python that puts DIR first on its path), to measure a
change before and after under the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def time_mnp(home: Path, nodes: int, rpn: int, command: list[str] | None = None,
             extra: list[str] | None = None) -> tuple[float, dict]:
    job = home / f"hello-{nodes}x{rpn}.yaml"
    job.write_text(json.dumps({"name": "bench-hello", "nodes": nodes, "ranks_per_node": rpn,
                               "command": command or HELLO,
                               "mpi": "mpich", "transport": "tcp"}))
    env = {**os.environ, "MNP_HOME": str(home)}
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "mnp", "launch", "--json", *(extra or []), str(job)],
                       capture_output=True, text=True, env=env, check=False)
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


PMI2 = Path("/usr/lib/x86_64-linux-gnu/slurm-wlm/mpi_pmi2.so")


def _timed(argv: list[str], env: dict[str, str], ranks: int, marker: str, cpu: list[float] | None = None) -> float:
    """The whole command's wall time; ``cpu``: appended with the CPU seconds the whole machine spent meanwhile
    (every process: the launcher, its daemons, the ranks; on namespace nodes all of them share these cores)."""
    c0 = _machine_cpu()
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    wall = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(_machine_cpu() - c0)
    said = p.stdout + p.stderr
    if p.returncode != 0 or said.count(marker) < ranks:
        raise SystemExit(f"{argv[0]} failed ({p.returncode}): {said[-2000:]}")
    return wall


def _machine_cpu() -> float:
    """CPU seconds this machine has spent so far outside idle and I/O wait (user, nice, system, irq, softirq)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return sum(int(fields[i]) for i in (1, 2, 3, 6, 7)) / os.sysconf("SC_CLK_TCK")


def _allocation(cluster: Any, n: int, work: Path) -> tuple[str, dict[str, str]]:
    """An allocation of ``n`` nodes held with ``salloc --no-shell``: its id, and the environment a command run
    inside it has (its SLURM_* variables, and an MNP_HOME under ``work``)."""
    got = cluster.run(["salloc", "--no-shell", "-N", str(n)], timeout=120)
    job_id = next((w for w in got.stderr.split() if w.isdigit()), None)
    if got.returncode != 0 or job_id is None:
        raise SystemExit(f"salloc failed: {got.stderr}")
    fields = dict(w.split("=", 1) for w in cluster.run(["scontrol", "-o", "show", "job", job_id]).stdout.split()
                  if "=" in w)
    return job_id, {**cluster.env, "SLURM_JOB_ID": job_id, "SLURM_JOB_NODELIST": fields["NodeList"],
                    "SLURM_JOB_NUM_NODES": str(n), "MNP_HOME": str(work / "home")}


def slurm_mode(counts: list[int], reps: int) -> None:
    """mnp launch inside a Slurm allocation against srun --mpi=pmi2, same hello, alternating runs."""
    sys.path.insert(0, str(ROOT / "tests"))
    from slurmnodes import SlurmNodes, slurm_installed

    if not slurm_installed():
        raise SystemExit("--slurm: Slurm is not installed (setup.sh installs slurmctld, slurmd, slurm-client, munge)")
    if not PMI2.exists():
        raise SystemExit(f"--slurm: this Slurm has no pmi2 plugin ({PMI2}): srun --mpi=pmi2 cannot be compared")
    # as installed packages have them: no module compiled at every start (PYTHONDONTWRITEBYTECODE may be set)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "mnp")], check=True, stdout=subprocess.DEVNULL)
    cluster = SlurmNodes(max(counts)).start()
    try:
        work = cluster.dir / "work"  # the nodes have their own /tmp: everything they run from lives here
        commands = (("mpi4py hello", HELLO, "hello from rank"), ("C hello (CMake, MPICH)", build_c_hello(work),
                                                                   "C-HELLO"))
        for n in counts:
            job_id, env = _allocation(cluster, n, work)
            try:
                for label, command, marker in commands:
                    job = work / f"hello-{n}.yaml"
                    job.write_text(json.dumps({"name": "bench-hello", "ranks_per_node": 1, "command": command,
                                               "mpi": "mpich", "transport": "tcp"}))
                    mnp = [sys.executable, "-m", "mnp", "launch", "--json", str(job)]
                    pooled = [*mnp[:4], "--via", "pool", *mnp[4:]]
                    srun = ["srun", "--mpi=pmi2", f"-N{n}", f"-n{n}", "--ntasks-per-node=1", *command]
                    srun_env = {**env, **TRANSPORT}
                    # the pool agents: one srun step started once, before the clock (as a user's `mnp pool start`)
                    subprocess.run([*mnp[:3], "pool", "start"], env=env, check=True, capture_output=True)
                    runs = [("mnp launch (srun agents)", mnp, env), ("mnp launch --via pool", pooled, env),
                            ("srun --mpi=pmi2", srun, srun_env)]
                    for _, argv, e in runs:  # warm each
                        _timed(argv, e, n, marker)
                    times: dict[str, list[float]] = {name: [] for name, _, _ in runs}
                    cpus: dict[str, list[float]] = {name: [] for name, _, _ in runs}
                    for _ in range(reps):
                        for name, argv, e in runs:
                            times[name].append(_timed(argv, e, n, marker, cpus[name]))
                    print(f"# Slurm allocation of {n} nodes x 1 rank, {label}, {reps} alternating runs each "
                          f"(allocation {job_id}, Slurm 22.05 namespace nodes; the pool's step started once before)")
                    for name, _, _ in runs:
                        t = times[name]
                        print(f"{name:25} median {statistics.median(t):6.3f} s  (min {min(t):.3f}, max {max(t):.3f});"
                              f"  machine CPU median {statistics.median(cpus[name]):.2f} s")
                    m_theirs = statistics.median(times["srun --mpi=pmi2"])
                    for name, _, _ in runs[:2]:
                        print(f"ratio {name} / srun = {statistics.median(times[name]) / m_theirs:.2f}  "
                              f"(target <= {1.5 if n <= 8 else 1.0})")
                    print()
            finally:
                cluster.run([sys.executable, "-m", "mnp", "pool", "stop"], env=env)
                cluster.run(["scancel", job_id])
    finally:
        cluster.stop()


def slurm_scale_mode(counts: list[int], reps: int) -> None:
    """Scaling inside one Slurm allocation of max(N) nodes: ``mnp run --via pool -N N`` (pool agents started once,
    not timed) against ``srun -N N`` (Slurm's own slurmstepd per node), of ``hostname`` and of the C hello
    (``srun --mpi=pmi2``), alternating, for each N; prints medians, t(N)/t(smallest N) for both, and mnp/srun."""
    sys.path.insert(0, str(ROOT / "tests"))
    from slurmnodes import SlurmNodes, slurm_installed

    if not slurm_installed() or not PMI2.exists():
        raise SystemExit("--slurm-scale: needs Slurm with its pmi2 plugin (setup.sh installs it)")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "mnp")], check=True, stdout=subprocess.DEVNULL)
    top = max(counts)
    cluster = SlurmNodes(top, shm_bytes=64 << 20).start(timeout=180)
    env: dict[str, str] = {}
    job_id = None
    try:
        work = cluster.dir / "work"
        hello = build_c_hello(work)
        job_id, env = _allocation(cluster, top, work)
        mnp = [sys.executable, "-m", "mnp"]
        subprocess.run([*mnp, "pool", "start"], env=env, check=True, capture_output=True, timeout=300)
        commands = {"hostname": (["hostname"], ["hostname"], "node"),
                    "C hello": (["--transport", "tcp", "--mpi", "mpich", *hello], ["--mpi=pmi2", *hello], "C-HELLO")}
        times: dict[tuple[str, str, int], list[float]] = {}
        for rep in range(reps + 1):  # the first round warms the page cache and is not counted
            for what, (ours, theirs, marker) in commands.items():
                for n in counts:
                    for who, argv, e in (
                            ("mnp", [*mnp, "run", "--via", "pool", "-N", str(n), *ours], env),
                            ("srun", ["srun", f"-N{n}", f"-n{n}", "--ntasks-per-node=1", *theirs],
                             {**env, **TRANSPORT})):
                        wall = _timed(argv, e, n, marker)
                        if rep:
                            times.setdefault((what, who, n), []).append(wall)
    finally:
        if env:
            cluster.run([sys.executable, "-m", "mnp", "pool", "stop"], env=env)
        if job_id:
            cluster.run(["scancel", job_id])
        cluster.stop()
    print(f"# one Slurm allocation of {top} nodes (Slurm 22.05 namespace nodes), 1 task per node, {reps} alternating "
          "runs each (whole command): mnp run --via pool -N N (pool agents started once before) against srun -N N; "
          "medians (min-max)")
    for what in commands:
        for who in ("mnp", "srun"):
            base = statistics.median(times[(what, who, counts[0])])
            for n in counts:
                t = times[(what, who, n)]
                med = statistics.median(t)
                print(f"{what:9} {who:5} {n:4} nodes  {med:7.3f} s ({min(t):.3f}-{max(t):.3f})  "
                      f"t(N)/t({counts[0]}) {med / base:5.2f}")
        for n in counts:
            print(f"{what:9} mnp/srun at {n} nodes: "
                  f"{statistics.median(times[(what, 'mnp', n)]) / statistics.median(times[(what, 'srun', n)]):.2f}")
    print(flush=True)


def _ssh_hosts_said(said: str, ranks: int) -> set[str]:
    """The hostnames the hello's ranks printed (``hello from rank R of N on HOST ...``)."""
    import re

    found = {int(r): host for r, host in re.findall(r"hello from rank (\d+) of \d+ on (\S+)", said)}  # Hydra
    found.update({int(r): host for r, host in re.findall(r"C-HELLO rank=(\d+) size=\d+ sum=\d+ host=(\S+)", said)})
    # may run two ranks' lines together: search, do not split
    if len(found) != ranks:
        raise SystemExit(f"expected {ranks} hello lines, got {sorted(found)}:\n{said[-2000:]}")
    return set(found.values())


def _launcher(tmp: Path, tree: Path) -> Path:
    """A remote Python that imports mnp from ``tree`` (another checkout) before the installed one."""
    wrapper = tmp / f"python-{abs(hash(str(tree))) % 10**6}"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={tree} exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


def _ssh_setup(tmp: Path, hosts: Any, name: str,
               command: list[str]) -> tuple[list[str], list[str], Path, dict[str, str]]:
    """One ssh_config for both launchers (identity, known_hosts, strict host keys, batch mode), Hydra's ssh
    wrapper, the hostfile (1 slot a host) and the job: mnp's argv without the job file, mpiexec's whole argv, the
    job file, and mnp's environment."""
    config = tmp / "bench_ssh_config"
    config.write_text(f"Host *\n    User root\n    IdentityFile {hosts.client_key}\n"
                      f"    IdentitiesOnly yes\n    UserKnownHostsFile {hosts.known_hosts}\n"
                      "    StrictHostKeyChecking yes\n    BatchMode yes\n    ConnectTimeout 10\n")
    ssh = tmp / "ssh"
    ssh.write_text(f"#!/bin/sh\nexec ssh -F {config} \"$@\"\n")
    ssh.chmod(0o755)
    hostfile = tmp / "hostfile"
    hostfile.write_text("".join(f"{a}:1\n" for a in hosts.addresses))
    job = tmp / "hello.yaml"
    job.write_text(json.dumps({"name": name, "ranks_per_node": 1, "command": command, "mpi": "mpich",
                               "transport": "tcp"}))
    mnp = [sys.executable, "-m", "mnp", "launch", "--json", "--hostfile", str(hostfile), "--ssh-config", str(config)]
    genv = [a for k, v in TRANSPORT.items() for a in ("-genv", k, v)]
    hydra = [str(Path(sys.executable).parent / "mpiexec"), "-launcher", "ssh", "-launcher-exec", str(ssh),
             "-f", str(hostfile), "-n", str(len(hosts.addresses)), "-iface", hosts.cluster.bridge, *genv, *command]
    return mnp, hydra, job, {"MNP_HOME": str(tmp / "home")}


def ssh_mode(counts: list[int], reps: int, baseline: Path | None = None) -> None:
    """mnp launch --hostfile against mpiexec -launcher ssh, on the same sshd hosts, alternating runs; ``baseline``:
    another mnp checkout (the code before a change), timed in the same alternation."""
    sys.path.insert(0, str(ROOT / "tests"))
    from sshnodes import SshNodes

    for tree in (ROOT, baseline):  # as installed packages have them: no module compiled at every start
        if tree is not None:
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "mnp")], check=True,
                           stdout=subprocess.DEVNULL)
    for n in counts:
        with tempfile.TemporaryDirectory(prefix="mnp-bench-ssh-") as d:
            tmp = Path(d)
            hosts = SshNodes(n, tmp, shm_bytes=256 << 20, quiet=True).start()
            launch: list[str] = []
            try:
                launch, hydra, job, home = _ssh_setup(tmp, hosts, "bench-hello-ssh", HELLO)
                mnp = [*launch, str(job)]
                # (label, argv, extra environment, working directory, is mnp)
                runs: list[tuple[str, list[str], dict[str, str], Path, bool]] = [
                    ("mnp launch --hostfile", mnp, home, ROOT, True),
                    ("mnp launch --via pool", [*launch, "--via", "pool", str(job)], home, ROOT, True),
                    ("mpiexec -launcher ssh", hydra, {"HYDRA_LAUNCHER_AUTOFORK": "0"}, ROOT, False)]
                # the pool agents are started once, before the clock (as a user's `mnp pool start` is)
                subprocess.run([*launch[:3], "pool", "start", *launch[5:]], env={**os.environ, **home}, cwd=ROOT,
                               check=True, capture_output=True)
                front = _front_pid([*launch[:3]], {**os.environ, **home})
                if baseline is not None:
                    runs.insert(1, ("mnp (baseline tree)", [*mnp[:3], "launch", "--remote-python",
                                                            str(_launcher(tmp, baseline)), *mnp[4:]],
                                    {**home, "PYTHONPATH": str(baseline)}, baseline, True))
                times = {label: [] for label, *_ in runs}  # type: dict[str, list[float]]
                bringup = {label: [] for label, *_ in runs}  # type: dict[str, list[float]]
                cpu = {label: [] for label, *_ in runs}  # type: dict[str, list[tuple[float, float]]]
                sshds = _sshd_pids(hosts)
                if len(sshds) != n:
                    raise SystemExit(f"found the sshd of {len(sshds)} of the {n} hosts")
                sshds += _pool_pids(hosts)  # the jobs' agents they fork are reaped by them, not by sshd
                for rep in range(reps + 1):  # the first round warms the page cache and is not counted
                    for label, argv, extra, cwd, is_mnp in runs:
                        there, front_cpu = _cpu_of(sshds), _cpu_of(front)
                        wall, here, phases = _ssh_once(argv, {**os.environ, **extra}, cwd, n, is_mnp)
                        here += _cpu_of(front) - front_cpu  # a --via pool job's mnp runs in the front's child
                        if rep:
                            times[label].append(wall)
                            cpu[label].append((here, _cpu_of(sshds) - there))
                            if phases:
                                bringup[label].append(phases.get("bringup_s", 0.0))
            finally:
                if launch:
                    subprocess.run([*launch[:3], "pool", "stop"], env={**os.environ, **home}, cwd=ROOT,
                                   capture_output=True)
                hosts.stop()
        print(f"# {n} sshd hosts x 1 rank, mpi4py hello, {reps} alternating runs each (whole command); CPU: this "
              "machine's side (the launcher, its ssh clients, the pool's front and the job's mnp it forks) and the "
              "hosts' (sshd sessions, pool agents, agents or proxies, ranks); the pool agents were started once "
              "before the first run (mnp pool start)")
        hydra_median = statistics.median(times[runs[-1][0]])
        for label, *_ in runs:
            t = times[label]
            more = f", bring-up median {statistics.median(bringup[label]):.3f} s" if bringup[label] else ""
            print(f"{label:24}  median {statistics.median(t):6.3f} s  (min {min(t):.3f}, max {max(t):.3f}{more}); "
                  f"CPU here {statistics.median(c[0] for c in cpu[label]):.2f} s, on the hosts "
                  f"{statistics.median(c[1] for c in cpu[label]):.2f} s")
        for label, *_ in runs[:-1]:
            print(f"ratio {label} / mpiexec = {statistics.median(times[label]) / hydra_median:.2f}  (target <= 1.0)")
        print(flush=True)


def _sshd_pids(hosts: Any) -> list[int]:
    """Each host's sshd (its init: every session's process is its child, reaped by it)."""
    found = []
    for i in range(len(hosts.addresses)):
        for pid in hosts.pids(i):
            try:  # sshd names its listener "sshd: /usr/sbin/sshd -D ... [listener] ..."
                if b" -D " in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ") and \
                        Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                    found.append(pid)
                    break
            except OSError:
                continue
    return found


def _pool_pids(hosts: Any) -> list[int]:
    """Each host's pool agent (``mnp pool start``), if any."""
    found = []
    for i in range(len(hosts.addresses)):
        for pid in hosts.pids(i):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "mnp-pool":
                    found.append(pid)
            except OSError:
                continue
    return found


def _front_pid(mnp: list[str], env: dict[str, str]) -> list[int]:
    """The pool's front on this machine (``mnp pool status``), as a list of its pid (none if it did not start)."""
    st = subprocess.run([*mnp, "pool", "status", "--json"], env=env, capture_output=True, text=True, cwd=ROOT)
    front = json.loads(st.stdout).get("front")
    return [int(front["pid"])] if front else []


def _cpu_of(pids: list[int]) -> float:
    """CPU seconds of these processes and of the children they reaped (utime, stime, cutime, cstime)."""
    total = 0
    for pid in pids:
        total += sum(int(x) for x in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def _ssh_once(argv: list[str], env: dict[str, str], cwd: Path, n: int,
              is_mnp: bool, whole: bool = False) -> tuple[float, float, dict]:
    """One timed run: wall time, CPU time of the command and what it waited for (its ssh clients), and mnp's phase
    timings (from ``mnp status --json``, read after the clock)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, cwd=cwd, check=False,
                       timeout=300)  # stdin: a batch job's
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    time.sleep(0.3)  # (not timed) the hosts' sshd reap the sessions that just ended, for their CPU count
    if p.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({p.returncode}): {(p.stdout + p.stderr)[-2000:]}")
    seen = _ssh_hosts_said(p.stdout + p.stderr, n)
    if seen != {f"node{i}" for i in range(n)}:
        raise SystemExit(f"{' '.join(argv[:4])}: ranks ran on {sorted(seen)}, not on the {n} ssh hosts")
    if not is_mnp:
        return wall, cpu, {}
    job_id = json.loads(p.stdout)["job_id"]
    st = subprocess.run([*argv[:3], "status", "--json", job_id], capture_output=True, text=True, env=env, cwd=cwd,
                        check=True)
    info = json.loads(st.stdout)["info"]
    return wall, cpu, info if whole else info.get("timings", {})


def ssh_tree_mode(counts: list[int], reps: int, width: int) -> None:
    """Tree spawn on sshd hosts: ``mnp launch --hostfile`` of the C hello with ``--tree-width K`` (mnp dials K
    hosts, their agents the rest) against the star (``--tree-width N``: mnp dials every host, 32 at once) and
    against ``mpiexec -launcher ssh`` (Hydra dials every host from mpiexec), alternating."""
    sys.path.insert(0, str(ROOT / "tests"))
    from sshnodes import SshNodes

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "mnp")], check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(prefix="mnp-bench-sshtree-") as d:
        hello = build_c_hello(Path(d))
        for n in counts:
            tmp = Path(d) / str(n)
            tmp.mkdir()
            hosts = SshNodes(n, tmp, shm_bytes=64 << 20, quiet=True).start()
            try:
                mnp, hydra, job, home = _ssh_setup(tmp, hosts, "bench-hello-sshtree", hello)
                runs = [(f"mnp, tree width {width}", [*mnp, "--tree-width", str(width), str(job)], home, True),
                        ("mnp, star", [*mnp, "--tree-width", str(n), str(job)], home, True),
                        ("mpiexec -launcher ssh", hydra, {"HYDRA_LAUNCHER_AUTOFORK": "0"}, False)]
                got: dict[str, list[tuple[float, float, dict]]] = {label: [] for label, *_ in runs}
                for rep in range(reps + 1):  # the first round warms the page cache and is not counted
                    for label, argv, extra, is_mnp in runs:
                        wall, here, info = _ssh_once(argv, {**os.environ, **extra}, ROOT, n, is_mnp, whole=True)
                        if rep:
                            got[label].append((wall, here, info))
            finally:
                hosts.stop()
            print(f"# {n} sshd hosts x 1 rank, C hello, {reps} alternating runs each (whole command): "
                  "medians (min-max)")
            for label, *_ in runs:
                walls = [w for w, _, _ in got[label]]
                line = (f"{label:24} {statistics.median(walls):7.3f} s ({min(walls):.3f}-{max(walls):.3f}); CPU here "
                        f"{statistics.median(h for _, h, _ in got[label]):.2f} s")
                infos = [i for _, _, i in got[label] if i]
                if infos:
                    line += (f"; bring-up {statistics.median(i['timings']['bringup_s'] for i in infos):.3f} s, "
                             f"frames in/out {statistics.median(i['control']['frames_in'] for i in infos):.0f}/"
                             f"{statistics.median(i['control']['frames_out'] for i in infos):.0f}, coordinator CPU "
                             f"{statistics.median(i['control']['coordinator_cpu_s'] for i in infos):.2f} s")
                print(line, flush=True)
            print(flush=True)


def pool_scale_mode(counts: list[int], reps: int) -> None:
    """Scaling on pool agents: max(N) sshd hosts, one pool on all of them (``mnp pool start``, not timed), then in
    alternating runs ``mnp run --via pool`` on the first N hosts of a command that only says where it ran
    (``hostname``: bring-up, start, output, goodbye) and of the C hello (MPI over tcp), for each N; prints medians,
    t(N)/t(smallest N), and bring-up from each job's record."""
    sys.path.insert(0, str(ROOT / "tests"))
    from sshnodes import SshNodes

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "mnp")], check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(prefix="mnp-bench-poolscale-") as d:
        tmp = Path(d)
        hello = build_c_hello(tmp)
        hosts = SshNodes(max(counts), tmp, shm_bytes=64 << 20, quiet=True).start()
        env = {**os.environ, "MNP_HOME": str(tmp / "home")}
        mnp = [sys.executable, "-m", "mnp"]
        try:
            launch, _, _, _ = _ssh_setup(tmp, hosts, "bench-poolscale", hello)
            files = {}
            for n in counts:
                files[n] = tmp / f"hosts-{n}"
                files[n].write_text("".join(f"{a}:1\n" for a in hosts.addresses[:n]))
            subprocess.run([*mnp, "pool", "start", *launch[5:]], env=env, check=True, capture_output=True,
                           timeout=600)
            commands = {"hostname": ["hostname"], "C hello": ["--transport", "tcp", "--mpi", "mpich", *hello]}
            got: dict[tuple[str, int], list[tuple[float, float]]] = {(c, n): [] for c in commands for n in counts}
            for rep in range(reps + 1):  # the first round warms the page cache and is not counted
                for what, argv in commands.items():
                    for n in counts:
                        t0 = time.perf_counter()
                        p = subprocess.run([*mnp, "run", "--json", "--hostfile", str(files[n]), "--via", "pool",
                                            *argv], env=env, capture_output=True, text=True, timeout=600,
                                           stdin=subprocess.DEVNULL)
                        wall = time.perf_counter() - t0
                        if p.returncode != 0:
                            raise SystemExit(f"mnp run {what} on {n} hosts failed: {p.stderr[-2000:]}")
                        said = p.stdout + p.stderr
                        lines = said.count("] node") if what == "hostname" else said.count("C-HELLO")
                        if lines < n:
                            raise SystemExit(f"mnp run {what} on {n} hosts: {lines} lines of output")
                        job_id = json.loads(p.stdout[p.stdout.index("{"):])["job_id"]
                        st = subprocess.run([*mnp, "status", "--json", job_id], env=env, capture_output=True,
                                            text=True, check=True)
                        if rep:
                            got[(what, n)].append((wall, json.loads(st.stdout)["info"]["timings"]["bringup_s"]))
        finally:
            subprocess.run([*mnp, "pool", "stop"], env=env, capture_output=True)
            hosts.stop()
    print(f"# pool agents on {max(counts)} sshd hosts, mnp run --via pool on the first N, 1 rank per host, "
          f"{reps} alternating runs each (whole command): medians (min-max)")
    for what in commands:
        base = statistics.median(w for w, _ in got[(what, counts[0])])
        for n in counts:
            walls = [w for w, _ in got[(what, n)]]
            med = statistics.median(walls)
            print(f"{what:9} {n:4} hosts  {med:7.3f} s ({min(walls):.3f}-{max(walls):.3f})  t(N)/t({counts[0]}) "
                  f"{med / base:5.2f}  bring-up {statistics.median(b for _, b in got[(what, n)]):.3f} s")
    print(flush=True)


def tree_mode(counts: list[int], reps: int) -> None:
    """The control tree against the star: whole ``mnp launch`` of the C hello (1 rank per node) on N isolated
    local nodes, ``--tree-width 32`` and ``--tree-width N`` (every agent a child of the coordinator), alternating;
    bring-up, frames the coordinator read and wrote, and its CPU time, from each job's record."""
    with tempfile.TemporaryDirectory(prefix="mnp-bench-") as d:
        tmp = Path(d)
        command = build_c_hello(tmp)
        time_mnp(tmp, counts[0], 1, command)  # warm the page cache
        print(f"# control tree (width 32) against the star: C hello, 1 rank per node, {reps} alternating runs each;"
              " medians (min-max)")
        print(f"{'nodes':>5}  {'shape':>6}  {'whole s':>20}  {'t(N)/t(' + str(counts[0]) + ')':>9}  "
              f"{'bring-up s':>10}  {'frames in':>9}  {'frames out':>10}  {'coord CPU s':>11}")
        base: dict[str, float] = {}
        for n in counts:
            runs: dict[str, list[tuple[float, dict]]] = {"tree": [], "star": []}
            for _ in range(reps):
                runs["tree"].append(time_mnp(tmp, n, 1, command, ["--tree-width", "32"]))
                runs["star"].append(time_mnp(tmp, n, 1, command, ["--tree-width", str(n)]))
            for shape, got in runs.items():
                walls = [w for w, _ in got]
                t = statistics.median(walls)
                base.setdefault(shape, t)
                med = {k: statistics.median(i["control"][k] for _, i in got)
                       for k in ("frames_in", "frames_out", "coordinator_cpu_s")}
                up = statistics.median(i["timings"]["bringup_s"] for _, i in got)
                print(f"{n:>5}  {shape:>6}  {t:7.3f} ({min(walls):.3f}-{max(walls):.3f})  {t / base[shape]:9.2f}  "
                      f"{up:10.3f}  {med['frames_in']:9.0f}  {med['frames_out']:10.0f}  "
                      f"{med['coordinator_cpu_s']:11.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--scale", default="4,8,16,32")
    ap.add_argument("--slurm", metavar="N[,N...]", help="Slurm mode only: mnp launch vs srun --mpi=pmi2 on N nodes")
    ap.add_argument("--ssh", metavar="N[,N...]", help="SSH mode only: mnp launch --hostfile vs mpiexec -launcher ssh "
                    "on N sshd hosts")
    ap.add_argument("--baseline", metavar="DIR", type=Path, help="SSH mode: also time the mnp of another checkout "
                    "(e.g. `git archive COMMIT | tar -x -C DIR`) in the same alternation")
    ap.add_argument("--ssh-tree", metavar="N[,N...]", help="SSH tree spawn mode only: mnp with --tree-width "
                    "--width against the star and Hydra on N sshd hosts, C hello")
    ap.add_argument("--width", type=int, default=32, help="--ssh-tree: the tree's width (default 32)")
    ap.add_argument("--pool-scale", metavar="N[,N...]", help="Pool scaling mode only: mnp run --via pool of hostname "
                    "and of the C hello on the first N of max(N) sshd hosts that hold a pool")
    ap.add_argument("--slurm-scale", metavar="N[,N...]", help="Slurm scaling mode only: mnp run --via pool -N N "
                    "against srun -N N (hostname, C hello) inside one allocation of max(N) nodes")
    ap.add_argument("--tree", metavar="N[,N...]", help="Tree mode only: the control tree (width 32) against the star "
                    "on N isolated local nodes (e.g. 8,32,64,128)")
    args = ap.parse_args()
    if not namespaces_available():
        raise SystemExit("bench/launch.py needs root (isolated local nodes)")
    clean_stale()
    if args.slurm:
        slurm_mode([int(x) for x in args.slurm.split(",")], args.reps)
        return
    if args.slurm_scale:
        slurm_scale_mode([int(x) for x in args.slurm_scale.split(",")], args.reps)
        return
    if args.ssh_tree:
        ssh_tree_mode([int(x) for x in args.ssh_tree.split(",")], args.reps, args.width)
        return
    if args.tree:
        tree_mode([int(x) for x in args.tree.split(",")], args.reps)
        return
    if args.pool_scale:
        pool_scale_mode([int(x) for x in args.pool_scale.split(",")], args.reps)
        return
    if args.ssh:
        ssh_mode([int(x) for x in args.ssh.split(",")], args.reps, args.baseline and args.baseline.resolve())
        return
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
