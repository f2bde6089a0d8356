from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mnp.errors import HostError, SpecError
from mnp.fabric.shm import (SHM_CAP, check_shm, fmt_bytes, job_segments, mpich_world_id, ompi_jobid, remove_job_segments,
                     shm_free, shm_need)

MiB = 1 << 20
GiB = 1 << 30


# -- sizing ----------------------------------------------------------------------------------------------------
def test_job_shm_size_wins() -> None:
    assert shm_need(8, "mpich", 3 * GiB) == 3 * GiB
    assert shm_need(8, "anything-at-all", 64 * MiB) == 64 * MiB  # the user's number is not second-guessed


def test_heuristic_floor_plus_per_rank() -> None:
    assert shm_need(1, "mpich", None) == 256 * MiB + 64 * MiB
    assert shm_need(2, "auto", None) == 384 * MiB
    assert shm_need(8, "openmpi", None) == 768 * MiB
    assert shm_need(4, "intelmpi", None) == 512 * MiB


def test_heuristic_cap_and_library_floor() -> None:
    assert shm_need(60, "mpich", None) == SHM_CAP == 4 * GiB  # 256 MiB + 3840 MiB = exactly the cap
    assert shm_need(100, "mpich", None) == 4 * GiB
    assert shm_need(512, "mpich", None) == 512 * 16 * MiB  # the cap never cuts below what the library maps


def test_sizing_errors_name_the_field() -> None:
    with pytest.raises(SpecError, match="^mpi: 'lam' is not one of"):
        shm_need(2, "lam", None)
    with pytest.raises(SpecError, match="^ranks_per_node: must be at least 1"):
        shm_need(0, "mpich", None)
    with pytest.raises(SpecError, match="^shm_size: must be positive"):
        shm_need(2, "mpich", 0)


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
