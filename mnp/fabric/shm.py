"""/dev/shm: how much a job needs, whether a node has it, and which files in it belong to one job.

Sizing (:func:`shm_need`) is a heuristic, stated as one:

- the job's ``shm_size`` when it gives one -- the user knows their application;
- otherwise ``256 MiB + 64 MiB x ranks on the node``, capped at 4 GiB (AWS Batch's suggested starting
  ``sharedMemorySize``), but never capped below ``16 MiB x ranks``.

Where the numbers come from: what the MPI libraries themselves put in /dev/shm is small and was measured or read
from their source (MPICH 5.0.2 from PyPI, 2 to 8 ranks on one node): MPICH's own intra-node segment
``mpich_shm_*`` is about 1 MiB per local rank; libfabric's ``shm`` provider, when it is used, adds a region of
12.8 MiB (apparent size; ~0.5 MiB touched) per rank; Open MPI 5's ``btl/sm`` maps 16 MiB per local process
(``btl_sm_segment_size`` default on 64-bit). So 16 MiB per rank is the floor the cap may not cut into. The rest --
the 256 MiB base and 64 MiB per rank -- is headroom for what applications add (MPI shared-memory windows, Python
``multiprocessing``, data loaders, NCCL), which nobody can know in advance: it keeps Docker's 64 MiB default from
failing at random ("Bus error", "No space left on device") without asking for more than a small node has.
tmpfs is a cap, not a reservation: pages are taken only when touched.

Ownership (:func:`job_segments`): names per library, as their sources write them --

- MPICH 5.0.x ch4 (``src/mpid/ch4/shm/posix/posix_init.c``): ``mpich_shm_<world_id %x>_<node_id>`` and, with
  more than one VCI, ``mpich_vci_<world_id %x>_<node_id>``, where ``world_id`` is the 32-bit FNV-1a hash of the
  PMI kvsname (``src/util/mpir_pmi.c``; a singleton init, kvsname ``singinit`` or ``0``, uses ``getpid()``).
  MPICH's main branch (after 5.0.2) hashes ``"<kvsname>-<init count>"`` instead, so both forms are matched.
  Checked here: hydra kvsname ``kvs_3744_0_1609155678_vm`` gave ``/dev/shm/mpich_shm_fa89ca2a_0`` =
  FNV-1a(kvsname). The last rank to finalize unlinks the file; a rank killed by SIGKILL leaves it behind.
- MPICH shared-memory windows (``MPL_shm``): ``mpich_shar_tmpXXXXXX`` from ``mkstemp`` -- random, tied to no
  job by name, removed by MPICH right after every rank attached. Not matched.
- libfabric ``shm`` provider (``FI_PROVIDER=shm``): ``<pid>:<uid>:<endpoint index>`` per rank (seen here as
  ``5660:0:0``). Matched by the ranks' pids.
- Open MPI 5 ``btl/sm``: ``sm_segment.<nodename>.<euid>.<jobid %x>.<node rank>`` (4.x ``btl/vader``:
  ``vader_segment.`` with the same fields). The 5.x jobid is computed from the PMIx namespace
  (``opal_pmix_convert_nspace``): the one-at-a-time hash of the part before ``@``, folded to 16 bits, in the top
  half, the number after ``@`` in the bottom half. Checked with Open MPI 5.0.11 from PyPI: namespace
  ``prterun-vm-8955@1`` gave ``sm_segment.vm.0.4eb10001.0``. 4.x jobids come from ORTE and must be given as
  numbers.
"""

from __future__ import annotations

import os
import re
import socket
import stat
from collections.abc import Iterable
from pathlib import Path

from mnp.errors import HostError, SpecError

__all__ = ["shm_need", "shm_free", "check_shm", "fmt_bytes", "mpich_world_id", "ompi_jobid", "job_segments",
           "remove_job_segments", "SHM_FLOOR", "SHM_PER_RANK", "SHM_CAP", "SHM_LIBRARY_PER_RANK"]

MiB = 1 << 20
GiB = 1 << 30
SHM_FLOOR = 256 * MiB
SHM_CAP = 4 * GiB
# Per-rank allowance (headroom included) and the library's own footprint, rounded up, per MPI family.
SHM_PER_RANK = {"mpich": 64 * MiB, "auto": 64 * MiB, "intelmpi": 64 * MiB, "openmpi": 64 * MiB}
SHM_LIBRARY_PER_RANK = {"mpich": 16 * MiB, "auto": 16 * MiB, "intelmpi": 16 * MiB, "openmpi": 16 * MiB}
_MPICH_INIT_EPOCHS = 8  # MPICH main hashes "<kvsname>-<n>"; sessions re-init rarely goes far


def shm_need(ranks_per_node: int, family: str, job_shm: int | None) -> int:
    """Bytes of /dev/shm a node running ``ranks_per_node`` ranks of an MPI ``family`` should have.

    The job's ``shm_size`` wins; else ``min(256 MiB + 64 MiB x ranks, max(4 GiB, 16 MiB x ranks))``. A heuristic:
    see the module docstring for where each number comes from.
    """
    if job_shm is not None:
        if job_shm < 1:
            raise SpecError("shm_size", f"must be positive, got {job_shm}")
        return int(job_shm)
    if family not in SHM_PER_RANK:
        raise SpecError("mpi", f"'{family}' is not one of " + ", ".join(f"'{f}'" for f in SHM_PER_RANK))
    if ranks_per_node < 1:
        raise SpecError("ranks_per_node", f"must be at least 1, got {ranks_per_node}")
    want = SHM_FLOOR + ranks_per_node * SHM_PER_RANK[family]
    return min(want, max(SHM_CAP, ranks_per_node * SHM_LIBRARY_PER_RANK[family]))


def shm_free(path: str | Path = "/dev/shm") -> tuple[int, int]:
    """(total, free) bytes of the file system at ``path`` (free as an unprivileged user sees it)."""
    try:
        st = os.statvfs(path)
    except OSError as e:
        raise HostError(socket.gethostname(), f"cannot read {path}: {e.strerror or e}") from None
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


def fmt_bytes(n: int) -> str:
    """1.5 GiB, 64 MiB, 512 KiB: the largest binary unit that keeps the number >= 1."""
    for unit, size in (("TiB", 1 << 40), ("GiB", GiB), ("MiB", MiB), ("KiB", 1 << 10)):
        if abs(n) >= size:
            v = n / size
            return f"{v:.0f} {unit}" if v == int(v) or v >= 100 else f"{v:.1f} {unit}"
    return f"{n} B"


def _fixes(need: int) -> str:
    mib = -(-need // MiB)
    size = f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"
    docker = f"{mib // 1024}g" if mib % 1024 == 0 else f"{mib}m"
    return (f"set shm_size: {size} in the job file (Docker: --shm-size={docker}; "
            f"AWS Batch: linuxParameters.sharedMemorySize: {mib})")


def check_shm(node_name: str, total: int, free: int, need: int) -> str | None:
    """A one-line problem naming the node, what it has, what the job needs and the fix; None when it fits."""
    if total < need:
        return f"{node_name}: /dev/shm is {fmt_bytes(total)}, the job needs {fmt_bytes(need)}: {_fixes(need)}"
    if free < need:
        return (f"{node_name}: /dev/shm has {fmt_bytes(free)} free of {fmt_bytes(total)}, the job needs "
                f"{fmt_bytes(need)}: remove stale files there (an earlier job's leftovers?) or {_fixes(need)}")
    return None


def _fnv1a32(text: str) -> int:
    h = 2166136261
    for b in text.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def mpich_world_id(kvsname: str, init_count: int | None = None) -> int:
    """MPICH's ``world_id`` for a kvsname: FNV-1a of the name (5.0.x), or of ``name-<init_count>`` (main)."""
    return _fnv1a32(kvsname if init_count is None else f"{kvsname}-{init_count}")


def _oat32(text: str) -> int:
    h = 0
    for b in text.encode():
        h = (h + b) & 0xFFFFFFFF
        h = (h + (h << 10)) & 0xFFFFFFFF
        h ^= h >> 6
    h = (h + (h << 3)) & 0xFFFFFFFF
    h ^= h >> 11
    return (h + (h << 15)) & 0xFFFFFFFF


def ompi_jobid(nspace: str) -> int:
    """Open MPI 5's 32-bit jobid for a PMIx namespace such as ``prterun-host-1234@1``."""
    base, at, local = nspace.rpartition("@")
    if not at:
        base, local = nspace, ""
    h = _oat32(base)
    family = ((h >> 16) ^ h) & 0xFFFF
    m = re.match(r"\d+", local)
    return (family << 16) | (int(m.group()) & 0xFFFF if m else 0)


_MPICH = re.compile(r"mpich_(?:shm|vci)_([0-9a-f]+)_(\d+)")
_OMPI = re.compile(r"(?:sm|vader)_segment\..+\.(\d+)\.([0-9a-f]+)\.(\d+)")
_FI_SHM = re.compile(r"(\d+):(\d+):(\d+)")


def job_segments(path: str | Path = "/dev/shm", kvsnames: Iterable[str] = (), *, world_ids: Iterable[int] = (),
                 ompi_nspaces: Iterable[str] = (), ompi_jobids: Iterable[int] = (), pids: Iterable[int] = (),
                 uid: int | None = None) -> list[Path]:
    """Files directly in ``path`` that belong to one job, by the names the MPI libraries give them.

    ``kvsnames``: the job's PMI kvsnames (MPICH); ``world_ids``: MPICH world ids already hashed;
    ``ompi_nspaces`` / ``ompi_jobids``: Open MPI's; ``pids``: the ranks' pids (libfabric shm regions, MPICH
    singletons); ``uid``: only files owned by this user. Regular files only; links are never followed.
    """
    mpich_ids = set(world_ids)
    for k in kvsnames:
        mpich_ids.add(mpich_world_id(k))
        mpich_ids.update(mpich_world_id(k, n) for n in range(1, _MPICH_INIT_EPOCHS + 1))
    pid_set = {int(p) for p in pids}
    mpich_ids.update(pid_set)  # singleton init: world_id = getpid()
    jobids = set(ompi_jobids) | {ompi_jobid(ns) for ns in ompi_nspaces}
    out: list[Path] = []
    try:
        names = sorted(os.listdir(path))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise HostError(socket.gethostname(), f"cannot list {path}: {e.strerror or e}") from None
    for name in names:
        ours = False
        if m := _MPICH.fullmatch(name):
            ours = int(m.group(1), 16) in mpich_ids
        elif m := _OMPI.fullmatch(name):
            ours = int(m.group(2), 16) in jobids and (uid is None or int(m.group(1)) == uid)
        elif m := _FI_SHM.fullmatch(name):
            ours = int(m.group(1)) in pid_set and (uid is None or int(m.group(2)) == uid)
        if not ours:
            continue
        p = Path(path) / name
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and (uid is None or st.st_uid == uid):
            out.append(p)
    return out


def remove_job_segments(path: str | Path = "/dev/shm", kvsnames: Iterable[str] = (), *,
                        world_ids: Iterable[int] = (), ompi_nspaces: Iterable[str] = (),
                        ompi_jobids: Iterable[int] = (), pids: Iterable[int] = (),
                        uid: int | None = None) -> list[Path]:
    """Remove what :func:`job_segments` finds; returns what was removed. Files gone meanwhile are skipped;
    a file that cannot be removed raises :class:`HostError` after the others were tried."""
    removed: list[Path] = []
    failed: list[str] = []
    for p in job_segments(path, kvsnames, world_ids=world_ids, ompi_nspaces=ompi_nspaces,
                          ompi_jobids=ompi_jobids, pids=pids, uid=uid):
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
        except OSError as e:
            failed.append(f"{p} ({e.strerror or e})")
    if failed:
        raise HostError(socket.gethostname(), f"cannot remove {len(failed)} shared-memory file(s): "
                        + ", ".join(failed))
    return removed
