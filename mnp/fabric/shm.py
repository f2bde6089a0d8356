"""/dev/shm: how much a job needs, whether a node has it, and which files in it belong to one job.

Sizing (:func:`shm_budget`) splits a node's need into two parts and says which is which:

- **MPI's part**: what the MPI library itself puts in /dev/shm for ``ranks`` ranks on the node, per family, from
  the measurements below -- no headroom guessed on top;
- **the job's part**: what the job's ``shm_size`` leaves beyond MPI's part. ``shm_size`` keeps its meaning (the
  node's /dev/shm size, AWS Batch's ``sharedMemorySize``), so the need is ``max(shm_size, MPI's part)``; without
  one the job's part is 0 (nobody can know what an application adds: Python ``multiprocessing``, MPI shared-memory
  windows, NCCL) and only the margin check below speaks for it.

A node is refused (:func:`shm_verdict`: a problem) only when its /dev/shm is smaller than, or has less free than,
that need -- the job cannot run there. It is warned about when what is free leaves a thin margin: less than
``need + max(need, 16 MiB)``. Local nodes, which mnp makes, get ``max(shm_size, MPI's part)`` when the job sets
``shm_size``, else ``max(64 MiB, need + margin)``: Docker's default, as an AWS Batch job without
``sharedMemorySize`` gets, unless MPI itself wants more (:func:`shm_need`). tmpfs is a cap, not a reservation.

Measured on this kind of machine (2 cores): K ranks on one node in a private mount+IPC namespace whose /dev/shm
is a fresh tmpfs of a chosen size (``unshare --mount --ipc -- sh -c 'mount -t tmpfs -o size=<N>m ... /dev/shm;
mpiexec -n K python probe.py <bytes>'``); each rank does an ``Allreduce`` of the message and a ``Sendrecv`` with
every other rank; rank 0 then lists /dev/shm (``os.stat``: apparent size, ``st_blocks``: touched) and every rank
its ``/proc/self/maps`` entries under /dev/shm, while a sampler polls ``statvfs('/dev/shm')`` every 0.5 ms for
the peak of used bytes; the tmpfs size is lowered until the job fails. No per-peer term showed up in any family:
every segment grows with the ranks on the node, none with pairs of them.

- MPICH 5.0.2 (PyPI wheel, ch4:ofi, ``FI_PROVIDER=tcp``), 8 MiB messages: one file ``mpich_shm_*`` of
  4 KiB + 1,057,344 B x K (K = 1, 2, 4, 8, 16: 1.01, 2.02, 4.04, 8.07, 16.1 MiB), every page touched at
  MPI_Init; 64 MiB messages use no more. 2 ranks die of SIGBUS in a 2 MiB /dev/shm and run in 3 MiB.
  Counted as ``64 KiB + 1.0625 MiB x K``.
- Open MPI 5.0.11 (PyPI wheel, ``btl=self,sm``): one sparse 16 MiB ``sm_segment.*`` file per rank, 72 KiB
  touched (K = 2, 4, 8), ~200 KiB with single-copy off (``smsc=^cma``, as where ptrace is blocked) and 64 MiB
  messages; one rank makes none. Open MPI checks that the segment's full size is free before making it: 2 ranks
  fail in a 16 MiB /dev/shm ("not enough space for /dev/shm/sm_segment...", then "unable to reach each other"),
  2 and 8 ranks run in 17 MiB. Counted as ``17 MiB + 256 KiB x K`` (K > 1).
- Open MPI 4.1.4 (Debian, ``btl=self,vader``): the same with a 4 MiB ``vader_segment.*`` per rank: 2 ranks fail
  in 4 MiB, 8 run in 5 MiB. mnp's family ``openmpi`` does not tell 4 from 5, so the 5.x figure is used.
- Intel MPI 2021.18.1 (PyPI ``impi-rt``, ``I_MPI_FABRICS=shm``): one sparse ~2.2 GiB segment, unlinked at once
  (it shows only in the ranks' maps as ``/dev/shm/Intel_MPI_* (deleted)``), touched as messages pass: 1 rank 0;
  4 ranks 11.4 MiB (1-4 MiB messages), 0.4 MiB (16-64 MiB: single copy); 8 ranks 28.6 MiB (4 MiB messages),
  0.6 MiB (32 MiB); 2 ranks grow with the message: 10.3, 37.4 and 69.8 MiB for 8, 32 and 64 MiB messages, and
  die of SIGBUS when the tmpfs is smaller (64 MiB messages: 12 MiB fails; 16 MiB ran once and failed once).
  Counted as ``max(16 MiB, 4 MiB x K)`` (K > 1), enough for messages up to 8 MiB; the 2-rank growth is noted.

MPI's part is sized by the family the coordinator knows (``mpich``, ``openmpi``, ``impi``; ``auto`` counts as
MPICH, ``intelmpi`` is another name for ``impi``).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnp.errors import HostError, SpecError

__all__ = [
    "SHM_DOCKER_DEFAULT",
    "SHM_FAMILIES",
    "SHM_SPARE",
    "ShmNeed",
    "check_shm",
    "fmt_bytes",
    "job_segments",
    "mpi_shm_bytes",
    "mpich_world_id",
    "ompi_jobid",
    "remove_job_segments",
    "shm_budget",
    "shm_free",
    "shm_need",
    "shm_verdict",
]

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
SHM_DOCKER_DEFAULT = 64 * MiB  # what a container gets without --shm-size (AWS Batch without sharedMemorySize)
SHM_SPARE = 16 * MiB  # the least room beyond the need that is not called thin
# family -> (canonical name, display name)
SHM_FAMILIES = {"mpich": ("mpich", "MPICH"), "auto": ("mpich", "MPICH"), "openmpi": ("openmpi", "Open MPI"),
                "impi": ("impi", "Intel MPI"), "intelmpi": ("impi", "Intel MPI")}
_MPICH_INIT_EPOCHS = 8  # MPICH main hashes "<kvsname>-<n>"; sessions re-init rarely goes far


def mpi_shm_bytes(family: str, ranks: int) -> int:
    """Bytes the MPI ``family`` itself needs in /dev/shm for ``ranks`` ranks on one node (module docstring)."""
    fam = SHM_FAMILIES[family][0]
    if fam == "mpich":
        return 64 * KiB + ranks * (MiB + 64 * KiB)
    if ranks < 2:  # Open MPI and Intel MPI make no segment for a rank alone
        return 0
    if fam == "openmpi":
        return 17 * MiB + ranks * 256 * KiB
    return max(16 * MiB, ranks * 4 * MiB)


@dataclass(frozen=True)
class ShmNeed:
    """One node's /dev/shm need, in parts: ``mpi`` (the library's own) and ``job`` (the rest of ``shm_size``)."""

    family: str  # canonical: mpich | openmpi | impi
    ranks: int
    mpi: int
    declared: int | None  # the job's shm_size

    @property
    def job(self) -> int:
        return max(0, self.declared - self.mpi) if self.declared is not None else 0

    @property
    def need(self) -> int:
        """Below this the job cannot run: refused."""
        return self.mpi + self.job

    @property
    def comfortable(self) -> int:
        """Below this much free the margin is thin: warned about. A declared shm_size is taken at its word."""
        return self.need if self.declared is not None else self.need + max(self.need, SHM_SPARE)

    @property
    def size(self) -> int:
        """What a node mnp makes gets: the declared size (at least MPI's part), else Docker's default or more."""
        return self.need if self.declared is not None else max(SHM_DOCKER_DEFAULT, self.comfortable)

    @property
    def name(self) -> str:
        return SHM_FAMILIES[self.family][1]

    def parts(self) -> str:
        """Which part of the need is MPI's and which the job's, in words."""
        mpi = f"{self.name}'s own {fmt_bytes(self.mpi)} for {self.ranks} rank{'s' if self.ranks != 1 else ''}"
        if self.declared is None:
            return f"{mpi}; the job sets no shm_size"
        if self.declared < self.mpi:
            return f"{mpi}, more than the job's shm_size of {fmt_bytes(self.declared)}"
        return f"{mpi} + {fmt_bytes(self.job)} of the job's shm_size of {fmt_bytes(self.declared)}"

    def note(self) -> str | None:
        """What the figures cannot promise, where a family has such a case."""
        if self.family == "impi" and self.ranks == 2:
            return ("Intel MPI with 2 ranks on a node stages messages through /dev/shm (measured: 37 MiB for "
                    "32 MiB messages): give messages over 8 MiB a shm_size of about 1.2 x the largest")
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "ranks": self.ranks, "mpi": self.mpi, "job": self.job,
                "declared": self.declared, "need": self.need, "comfortable": self.comfortable}


def shm_budget(ranks_per_node: int, family: str, job_shm: int | None) -> ShmNeed:
    """The /dev/shm need of a node running ``ranks_per_node`` ranks of MPI ``family``, with the job's
    ``shm_size`` (``job_shm``, bytes, or None), split into MPI's part and the job's."""
    if job_shm is not None and job_shm < 1:
        raise SpecError("shm_size", f"must be positive, got {job_shm}")
    if family not in SHM_FAMILIES:
        raise SpecError("mpi", f"'{family}' is not one of " + ", ".join(f"'{f}'" for f in SHM_FAMILIES))
    if ranks_per_node < 1:
        raise SpecError("ranks_per_node", f"must be at least 1, got {ranks_per_node}")
    return ShmNeed(SHM_FAMILIES[family][0], ranks_per_node, mpi_shm_bytes(family, ranks_per_node),
                   None if job_shm is None else int(job_shm))


def shm_need(ranks_per_node: int, family: str, job_shm: int | None) -> int:
    """Bytes of /dev/shm to make a node with (local nodes): :attr:`ShmNeed.size` of :func:`shm_budget`."""
    return shm_budget(ranks_per_node, family, job_shm).size


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


def check_shm(node_name: str, total: int, free: int, need: int, *, parts: str | None = None,
              fix: int | None = None) -> str | None:
    """A one-line problem naming the node, what it has, what the job needs and the fix; None when it fits.
    ``parts``: what the need is made of (MPI's part, the job's), added in brackets; ``fix``: the shm_size to
    suggest (default: the need)."""
    why = f" ({parts})" if parts else ""
    if total < need:
        return (f"{node_name}: /dev/shm is {fmt_bytes(total)}, the job needs {fmt_bytes(need)}{why}: "
                f"{_fixes(fix or need)}")
    if free < need:
        return (f"{node_name}: /dev/shm has {fmt_bytes(free)} free of {fmt_bytes(total)}, the job needs "
                f"{fmt_bytes(need)}{why}: remove stale files there (an earlier job's leftovers?) or "
                f"{_fixes(fix or need)}")
    return None


def shm_verdict(node_name: str, total: int, free: int, need: ShmNeed) -> tuple[str | None, str | None]:
    """(problem, warning) for one node: a problem when the job cannot run there (less than ``need.need``), a
    warning when it can but the margin is thin (less free than ``need.comfortable``) or the family has a case the
    figures cannot promise. Each names the node and says which part of the need is MPI's and which the job's."""
    parts = need.parts()
    problem = check_shm(node_name, total, free, need.need, parts=parts, fix=max(need.need, need.size))
    if problem:
        return problem, None
    warnings = []
    if free < need.comfortable:
        warnings.append(f"{node_name}: /dev/shm has {fmt_bytes(free)} free, the job needs {fmt_bytes(need.need)} "
                        f"({parts}): a thin margin for what else the ranks put there (Python multiprocessing, "
                        f"MPI shared-memory windows, NCCL); if they do, {_fixes(need.size)}")
    if need.declared is not None and need.declared < need.mpi:
        warnings.append(f"{node_name}: shm_size {fmt_bytes(need.declared)} is less than {need.name}'s own "
                        f"{fmt_bytes(need.mpi)} for {need.ranks} ranks; {fmt_bytes(need.mpi)} is needed")
    if (note := need.note()) and free < 4 * need.comfortable:
        warnings.append(f"{node_name}: {note}")
    return None, "; ".join(warnings) or None


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
