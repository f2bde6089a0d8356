from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mnp.errors import HostError, SpecError
from mnp.fabric.shm import (
    SHM_DOCKER_DEFAULT,
    check_shm,
    fmt_bytes,
    job_segments,
    mpi_shm_bytes,
    mpich_world_id,
    ompi_jobid,
    remove_job_segments,
    shm_budget,
    shm_free,
    shm_need,
    shm_verdict,
)

MiB = 1 << 20
GiB = 1 << 30


# -- sizing ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ranks", [1, 2, 4, 8, 16])
def test_mpich_part_covers_what_mpich_502_made(ranks: int) -> None:
    measured = 4096 + 1_057_344 * ranks  # mpich_shm_* of MPICH 5.0.2, every page touched (module docstring)
    got = mpi_shm_bytes("mpich", ranks)
    assert measured <= got <= measured + (1 + ranks) * 64 * 1024  # a page-rounded margin, no headroom
    assert mpi_shm_bytes("auto", ranks) == got  # auto counts as MPICH


def test_open_mpi_and_intel_mpi_parts() -> None:
    assert mpi_shm_bytes("openmpi", 1) == mpi_shm_bytes("impi", 1) == 0  # no segment for a rank alone
    assert 16 * MiB < mpi_shm_bytes("openmpi", 2) <= 18 * MiB  # the 16 MiB segment must be free; 17 MiB ran 8
    assert mpi_shm_bytes("openmpi", 8) - mpi_shm_bytes("openmpi", 2) == 6 * 256 * 1024
    assert mpi_shm_bytes("impi", 2) == mpi_shm_bytes("impi", 4) == 16 * MiB
    assert mpi_shm_bytes("impi", 8) == 32 * MiB > 28.6 * MiB  # measured peak with 4 MiB messages
    assert mpi_shm_bytes("intelmpi", 8) == mpi_shm_bytes("impi", 8)


def test_undeclared_need_is_mpi_alone_and_nodes_get_dockers_default() -> None:
    b = shm_budget(2, "mpich", None)
    assert (b.family, b.mpi, b.job, b.need) == ("mpich", mpi_shm_bytes("mpich", 2), 0, mpi_shm_bytes("mpich", 2))
    assert b.comfortable == b.need + 16 * MiB
    assert b.size == shm_need(2, "mpich", None) == SHM_DOCKER_DEFAULT == 64 * MiB
    assert b.parts() == "MPICH's own 2.2 MiB for 2 ranks; the job sets no shm_size"
    big = shm_budget(64, "openmpi", None)  # MPI itself wants more than Docker's default: the node gets it
    assert big.size == 2 * big.need > 64 * MiB


def test_declared_shm_size_is_the_nodes_size_split_in_parts() -> None:
    b = shm_budget(2, "openmpi", 512 * MiB)
    assert b.need == b.size == b.comfortable == 512 * MiB
    assert b.mpi == mpi_shm_bytes("openmpi", 2) and b.job == 512 * MiB - b.mpi
    assert b.parts() == "Open MPI's own 17.5 MiB for 2 ranks + 494 MiB of the job's shm_size of 512 MiB"
    small = shm_budget(2, "mpich", 1 * MiB)  # less than MPI's own: MPI's own is needed, and made
    assert small.need == small.size == small.mpi and small.job == 0
    assert shm_need(8, "mpich", 3 * GiB) == 3 * GiB


def test_sizing_errors_name_the_field() -> None:
    with pytest.raises(SpecError, match="^mpi: 'lam' is not one of"):
        shm_need(2, "lam", None)
    with pytest.raises(SpecError, match="^ranks_per_node: must be at least 1"):
        shm_need(0, "mpich", None)
    with pytest.raises(SpecError, match="^shm_size: must be positive"):
        shm_need(2, "mpich", 0)


def test_verdict_docker_default_runs_two_mpich_ranks() -> None:
    assert shm_verdict("node 1 (n1)", 64 * MiB, 64 * MiB, shm_budget(2, "mpich", None)) == (None, None)
    assert shm_verdict("node 1 (n1)", 64 * MiB, 64 * MiB, shm_budget(4, "openmpi", None)) == (None, None)


def test_verdict_refuses_only_below_the_need() -> None:
    b = shm_budget(2, "mpich", None)
    problem, warning = shm_verdict("node 0 (n0)", 2 * MiB, 2 * MiB, b)
    assert warning is None and problem == (
        "node 0 (n0): /dev/shm is 2 MiB, the job needs 2.2 MiB (MPICH's own 2.2 MiB for 2 ranks; the job sets no "
        "shm_size): set shm_size: 64Mi in the job file (Docker: --shm-size=64m; AWS Batch: "
        "linuxParameters.sharedMemorySize: 64)")
    problem, _ = shm_verdict("node 0 (n0)", 64 * MiB, 1 * MiB, b)
    assert problem is not None and problem.startswith("node 0 (n0): /dev/shm has 1 MiB free of 64 MiB") and \
        "stale" in problem
    problem, _ = shm_verdict("node 0 (node0)", 64 * MiB, 64 * MiB, shm_budget(1, "mpich", 512 * MiB))
    assert problem is not None and problem.startswith("node 0 (node0): /dev/shm is 64 MiB, the job needs 512 MiB "
                                                      "(MPICH's own 1.1 MiB for 1 rank + 511 MiB of the job's")


def test_verdict_warns_on_a_thin_margin() -> None:
    b = shm_budget(2, "mpich", None)
    problem, warning = shm_verdict("node 3 (n3)", 16 * MiB, 16 * MiB, b)
    assert problem is None and warning is not None
    assert warning.startswith("node 3 (n3): /dev/shm has 16 MiB free, the job needs 2.2 MiB (MPICH's own") and \
        "thin margin" in warning and "shm_size: 64Mi" in warning
    _, warning = shm_verdict("n", 64 * MiB, 64 * MiB, shm_budget(2, "mpich", 1 * MiB))
    assert warning == "n: shm_size 1 MiB is less than MPICH's own 2.2 MiB for 2 ranks; 2.2 MiB is needed"
    _, warning = shm_verdict("n", 64 * MiB, 64 * MiB, shm_budget(2, "impi", None))  # the 2-rank staging case
    assert warning is not None and "Intel MPI with 2 ranks" in warning
    assert shm_verdict("n", 1 * GiB, 1 * GiB, shm_budget(2, "impi", None)) == (None, None)


def test_shm_free_reads_statvfs(tmp_path: Path) -> None:
    total, free = shm_free(tmp_path)
    assert total > 0 and 0 <= free <= total
    with pytest.raises(HostError, match="cannot read"):
        shm_free(tmp_path / "missing")


def test_fmt_bytes() -> None:
    assert fmt_bytes(64 * MiB) == "64 MiB"
    assert fmt_bytes(1536 * MiB) == "1.5 GiB"
    assert fmt_bytes(512) == "512 B"


def test_check_shm_too_small() -> None:
    msg = check_shm("node 1 (ip-10-0-0-7)", 64 * MiB, 60 * MiB, 384 * MiB)
    assert msg == ("node 1 (ip-10-0-0-7): /dev/shm is 64 MiB, the job needs 384 MiB: set shm_size: 384Mi in the "
                   "job file (Docker: --shm-size=384m; AWS Batch: linuxParameters.sharedMemorySize: 384)")


def test_check_shm_whole_gib_and_fits() -> None:
    assert "shm_size: 4Gi" in (check_shm("node 0", GiB, GiB, 4 * GiB) or "")
    assert "--shm-size=4g" in (check_shm("node 0", GiB, GiB, 4 * GiB) or "")
    assert check_shm("node 0", 8 * GiB, 8 * GiB, 4 * GiB) is None


def test_check_shm_full_of_leftovers() -> None:
    msg = check_shm("node 2", 1 * GiB, 100 * MiB, 384 * MiB)
    assert msg is not None and msg.startswith("node 2: /dev/shm has 100 MiB free of 1 GiB, the job needs 384 MiB")
    assert "stale" in msg and "\n" not in msg


# -- names -----------------------------------------------------------------------------------------------------
def test_mpich_world_id_matches_what_mpich_502_wrote() -> None:
    # Seen here: hydra kvsname kvs_3744_0_1609155678_vm -> /dev/shm/mpich_shm_fa89ca2a_0 (MPICH 5.0.2).
    assert f"{mpich_world_id('kvs_3744_0_1609155678_vm'):x}" == "fa89ca2a"
    assert mpich_world_id("x", 1) == mpich_world_id("x-1")


def test_ompi_jobid_matches_what_open_mpi_5_wrote() -> None:
    # Seen here: Open MPI 5.0.11, namespace prterun-vm-8955@1 -> /dev/shm/sm_segment.vm.0.4eb10001.{0,1}
    assert f"{ompi_jobid('prterun-vm-8955@1'):x}" == "4eb10001"
    assert ompi_jobid("prterun-vm-8955@2") == ompi_jobid("prterun-vm-8955@1") + 1


def populate(d: Path) -> dict[str, Path]:
    mine = f"{mpich_world_id('mnp_j1_1_100'):x}"
    other = f"{mpich_world_id('mnp_j2_1_100'):x}"
    reinit = f"{mpich_world_id('mnp_j1_1_100', 2):x}"
    jid = f"{ompi_jobid('prterun-h-77@1'):x}"
    names = {
        "mpich": f"mpich_shm_{mine}_0", "mpich_vci": f"mpich_vci_{mine}_1", "mpich_reinit": f"mpich_shm_{reinit}_0",
        "mpich_other": f"mpich_shm_{other}_0", "fi_shm": "4242:0:0", "fi_shm_other": "4243:0:0",
        "ompi": f"sm_segment.h.example.com.0.{jid}.3", "vader": f"vader_segment.h.0.{jid}.0",
        "ompi_other": f"sm_segment.h.0.{ompi_jobid('prterun-h-78@1'):x}.0", "random": "mpich_shar_tmpAbC123",
        "unrelated": "torch_1234_5678",
    }
    out = {}
    for k, n in names.items():
        (d / n).write_bytes(b"x")
        out[k] = d / n
    return out


def test_job_segments_match_one_job_only(tmp_path: Path) -> None:
    f = populate(tmp_path)
    got = job_segments(tmp_path, ["mnp_j1_1_100"], pids=[4242], ompi_nspaces=["prterun-h-77@1"])
    assert sorted(got) == sorted([f["mpich"], f["mpich_vci"], f["mpich_reinit"], f["fi_shm"], f["ompi"],
                                  f["vader"]])
    assert job_segments(tmp_path, ["mnp_j9_1_1"]) == []
    assert job_segments(tmp_path) == []  # nothing named, nothing matched


def test_job_segments_by_hash_and_jobid(tmp_path: Path) -> None:
    f = populate(tmp_path)
    assert job_segments(tmp_path, world_ids=[mpich_world_id("mnp_j2_1_100")]) == [f["mpich_other"]]
    assert job_segments(tmp_path, ompi_jobids=[ompi_jobid("prterun-h-78@1")]) == [f["ompi_other"]]


def test_job_segments_uid_filter_and_no_links(tmp_path: Path) -> None:
    f = populate(tmp_path)
    me = os.getuid()
    assert f["fi_shm"] in job_segments(tmp_path, pids=[4242], uid=me)
    assert job_segments(tmp_path, pids=[4242], uid=me + 1) == []
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    link = tmp_path / f"mpich_shm_{mpich_world_id('mnp_j3_1_1'):x}_0"
    link.symlink_to(target)
    assert job_segments(tmp_path, ["mnp_j3_1_1"]) == []


def test_job_segments_missing_dir(tmp_path: Path) -> None:
    assert job_segments(tmp_path / "nope", ["k"]) == []


def test_remove_job_segments_leaves_the_rest(tmp_path: Path) -> None:
    f = populate(tmp_path)
    removed = remove_job_segments(tmp_path, ["mnp_j1_1_100"], pids=[4242])
    assert sorted(removed) == sorted([f["mpich"], f["mpich_vci"], f["mpich_reinit"], f["fi_shm"]])
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(p.name for k, p in f.items() if p not in removed)
    assert remove_job_segments(tmp_path, ["mnp_j1_1_100"], pids=[4242]) == []


def test_remove_job_segments_reports_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = populate(tmp_path)
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self == f["mpich"]:
            raise PermissionError(13, "Permission denied")
        real_unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(HostError, match=r"cannot remove 1 shared-memory file\(s\): .*mpich_shm_.* "
                                        r"\(Permission denied\)"):
        remove_job_segments(tmp_path, ["mnp_j1_1_100"])
    assert f["mpich"].exists() and not f["mpich_vci"].exists()  # the others were still removed


# -- the real thing --------------------------------------------------------------------------------------------
MPIEXEC = Path(sys.executable).parent / "mpiexec"


@pytest.mark.skipif(not MPIEXEC.exists() or shutil.which("hydra_pmi_proxy", path=str(MPIEXEC.parent)) is None
                    or not Path("/dev/shm").is_dir(), reason="needs the venv's MPICH (hydra mpiexec) and /dev/shm")
def test_real_mpich_segment_is_named_from_the_kvsname(tmp_path: Path) -> None:
    seen_file = tmp_path / "seen"
    prog = ("import os, sys; from mpi4py import MPI; c = MPI.COMM_WORLD; c.Barrier(); "
            "c.rank == 0 and open(sys.argv[1], 'w').write(' '.join(os.listdir('/dev/shm'))); c.Barrier()")
    env = {**os.environ, "MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "tcp"}
    r = subprocess.run([str(MPIEXEC), "-verbose", "-n", "2", sys.executable, "-c", prog, str(seen_file)],
                       capture_output=True, text=True, timeout=120, env=env, check=False)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    kvsname = re.search(r"kvsname=(\S+)", out)
    assert kvsname, out[-3000:]
    expected = f"mpich_shm_{mpich_world_id(kvsname.group(1)):x}_0"
    assert expected in seen_file.read_text().split()  # MPICH 5.0.x: FNV-1a of the kvsname, node 0
    assert not Path("/dev/shm", expected).exists()  # the last rank to finalize unlinked it
