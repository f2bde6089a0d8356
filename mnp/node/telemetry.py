"""Telemetry on a node: CPU, memory and /dev/shm use of the job's processes, sampled by the agent.

Every ``interval`` seconds (``MNP_TELEMETRY_INTERVAL``, default 1; 0: off; never more often than once a second)
the agent's loop calls :meth:`Sampler.poll`, which returns one :class:`~mnp.control.messages.Telemetry` for the
coordinator, or None while nothing of the job runs here. What is counted, and why:

- **Processes**: every descendant of the agent (ranks, a launcher, its daemons, whatever they start) except the
  agent's watchdog. On a local node the agent is the PID namespace's init, so processes that daemonized are still
  found; elsewhere an orphan re-parented to the host's init is lost from view.
- **CPU**: user + system seconds of the live processes, plus what they have reaped from their children
  (``children_user``/``children_system``), plus the last figure seen of each process the agent itself reaped. A
  process that lived less than one interval, or the last interval of one whose parent never waits for it, is
  missed. ``cpu_pct`` is the growth over the interval: 100 is one core busy (``top``'s convention), 800 eight.
- **Memory**: resident *private* memory, the sum over the processes of ``rss - shared`` from ``/proc/PID/statm``
  (RssAnon: heap, stacks, anonymous maps). Plain RSS summed over ranks counts shared libraries, and every
  /dev/shm segment the ranks map, once per rank (8 ranks of one 17 MiB Open MPI segment: 136 MiB that do not
  exist); USS or PSS would be exact but read ``/proc/PID/smaps`` (psutil's ``memory_full_info``), tens of times
  dearer per process (see README, Telemetry). Copy-on-write pages a forked child still shares with its parent are
  counted in both.
- **/dev/shm**: on a node with its own /dev/shm (``shm_private``: local isolated nodes, AWS Batch containers)
  the bytes used in that tmpfs (``statvfs``), whoever wrote them. Where /dev/shm is the host's (``--no-isolate``,
  SSH and Slurm hosts) only the job's files can count: regular files directly in /dev/shm, owned by the agent's
  user, that were not there when the agent started, by their allocated blocks (a sparse segment counts what it
  touched). Another job of the same user starting meanwhile on that host is counted too; nodes sharing one host
  each count the files of all of them.

One pass finds the agent's descendants from the kernel's lists of each task's children
(``/proc/PID/task/TID/children``), so it costs in proportion to the job's processes, not the machine's (a
kernel without them, ``CONFIG_PROC_CHILDREN`` unset: one read of ``/proc/PID/stat`` per process visible), then
``stat`` and ``statm`` of each of the job's processes, and one ``statvfs`` (or one listing of /dev/shm). The
CPU time of each pass (this thread's, so the figure does not grow with the machine's load) is sent with the
sample and kept in the record (``sample_ms``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

from mnp import config
from mnp.control import messages as m
from mnp.errors import UsageError

__all__ = ["Sampler", "Sample", "descendants", "telemetry_interval", "shm_used", "job_shm_files"]

_SHM = "/dev/shm"
_IDLE_S = 0.2  # how soon a pass that found nothing of the job is repeated (nothing is sent meanwhile)


def _interval(text: str, name: str) -> float:
    value = config.seconds(text, name)
    if 0 < value < 1:
        raise UsageError(f"{name}: {text!r} must be 0 (telemetry off) or at least 1 second")
    return value


def telemetry_interval(environ: Mapping[str, str] | None = None) -> float:
    """Seconds between samples: ``$MNP_TELEMETRY_INTERVAL``, else 1; 0 turns telemetry off."""
    return float(config.setting("telemetry_interval", None, _interval, environ))


def shm_used(path: str = _SHM) -> int:
    """Bytes used in the file system at ``path`` (all of it: a node's own tmpfs)."""
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _listing(path: str) -> dict[tuple[int, int], int]:
    """(device, inode) -> allocated bytes of the regular files directly in ``path`` owned by this user."""
    uid = os.geteuid()
    out: dict[tuple[int, int], int] = {}
    try:
        with os.scandir(path) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # removed meanwhile
                if entry.is_file(follow_symlinks=False) and st.st_uid == uid:
                    out[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    except OSError:
        pass
    return out


def job_shm_files(path: str, before: Iterable[tuple[int, int]]) -> int:
    """Allocated bytes of this user's files directly in ``path`` that are not among ``before`` ((dev, inode))."""
    old = set(before)
    return sum(size for key, size in _listing(path).items() if key not in old)


#: children lists read in one pass before it checks that the scan of every process would not be cheaper
_READS_BEFORE_CHECK = 64


def descendants(root: int, proc: str = "/proc") -> list[int] | None:
    """The PIDs of every descendant of ``root``, parents before children, from the children lists of each of
    their threads (a process that forks from a second thread is the child of that thread). None where the kernel
    keeps no such lists, or where the job's threads outnumber the machine's processes (OpenMP or PyTorch ranks
    with a thread per core): one read per process, the caller's scan, is then cheaper. A process gone meanwhile is
    left out with what it started (they were re-parented)."""
    if not os.path.exists(f"{proc}/{root}/task/{root}/children"):
        return None
    out: list[int] = []
    seen = {root}
    todo = [root]
    reads, budget = 0, None
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir(f"{proc}/{pid}/task")
        except OSError:
            continue
        reads += len(tids)
        if budget is None and reads > _READS_BEFORE_CHECK:
            budget = sum(1 for name in os.listdir(proc) if name.isdigit())
        if budget is not None and reads > budget:
            return None
        for tid in tids:
            try:
                with open(f"{proc}/{pid}/task/{tid}/children", "rb") as f:
                    kids = f.read().split()
            except OSError:
                continue
            for k in kids:
                child = int(k)
                if child not in seen:  # a PID reused between two reads: counted once
                    seen.add(child)
                    out.append(child)
                    todo.append(child)
    return out


def _processes(psutil: Any, pids: list[int]) -> list[Any]:
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.Error:
            continue  # gone meanwhile
    return procs


class Sample:
    """What one pass found: processes, CPU seconds so far, private resident bytes, /dev/shm bytes, its cost."""

    __slots__ = ("procs", "cpu_s", "rss", "shm", "cost_s")

    def __init__(self, procs: int, cpu_s: float, rss: int, shm: int, cost_s: float) -> None:
        self.procs, self.cpu_s, self.rss, self.shm, self.cost_s = procs, cpu_s, rss, shm, cost_s


class Sampler:
    """Samples the descendants of process ``root`` (the agent) but ``exclude`` (its watchdog).

    ``shm_private``: this node's /dev/shm is its own (count all of it); else only the files that appear in it
    after this sampler was made and belong to this user."""

    def __init__(self, interval: float, shm_private: bool, root: int | None = None, exclude: Iterable[int] = (),
                 shm_path: str = _SHM) -> None:
        self._psutil: Any = None  # psutil, imported by the first pass (well after the agent's hello), not here
        self.interval = interval
        self.shm_private = shm_private
        self.shm_path = shm_path
        self.root_pid = os.getpid() if root is None else root
        self.root: Any = None  # psutil's Process of root_pid, made with the first pass
        self.exclude = set(exclude)
        self.shm_before = set() if shm_private else set(_listing(shm_path))
        self.last: dict[tuple[int, float], float] = {}  # (pid, start time) of a direct child -> its CPU seconds
        self.done_cpu = 0.0  # CPU seconds of direct children that are gone
        self.next_due = 0.0
        self.prev: tuple[float, float] | None = None  # (when, cpu_s) of the previous sample
        # nothing to sample before the node starts a process: the agent arms the sampler then (a pass per agent
        # every 0.2 s while 128 nodes came up cost a second of CPU, all of it finding nothing)
        self.armed = False

    @classmethod
    def from_handoff(cls, handoff: Mapping[str, Any], exclude: Iterable[int] = ()) -> Sampler | None:
        """The agent's sampler as its handoff asks (``telemetry_s``: seconds, 0 off; absent: this node's
        ``$MNP_TELEMETRY_INTERVAL``), or None when off."""
        given = handoff.get("telemetry_s")
        try:
            interval = telemetry_interval() if given is None else float(given)
        except UsageError:
            return None  # a bad variable on a node that was not told: no telemetry rather than no node
        if not math.isfinite(interval) or interval <= 0:
            return None
        return cls(max(1.0, interval), bool(handoff.get("shm_private")), exclude=exclude)

    def arm(self, now: float) -> None:
        """The node started a process of the job: sample from a moment after it (not the instant of its exec)."""
        if not self.armed:
            self.armed = True
            self.next_due = max(self.next_due, now + _IDLE_S)

    def poll(self, now: float) -> m.Telemetry | None:
        """A message when a sample is due (every ``interval`` seconds of ``now``, a monotonic clock) and something
        of the job runs here; else None. Messages are always at least ``interval`` apart."""
        if now < self.next_due or not self.armed:
            return None
        if not self._started():  # a node's Python without psutil runs the job all the same, unsampled
            self.next_due = math.inf
            return None
        self.next_due = now + self.interval
        s = self.sample()
        prev, self.prev = self.prev, (now, s.cpu_s)
        if s.procs == 0:  # nothing runs yet (or any more): look again soon, so a short job's start is not missed
            self.next_due = now + min(self.interval, _IDLE_S)
            return None
        pct = 0.0
        if prev is not None and now > prev[0]:
            pct = max(0.0, s.cpu_s - prev[1]) / (now - prev[0]) * 100
        return m.Telemetry(round(min(pct, 1e6), 1), round(s.cpu_s, 3), s.rss, s.shm, s.procs, round(s.cost_s, 6))

    def _started(self) -> bool:
        """psutil and the root's process, at the first pass; False where this Python has no psutil."""
        if self.root is None:
            try:
                import psutil  # here, not when the agent is made: its import would delay the agent's hello
            except ImportError:
                return False
            self._psutil, self.root = psutil, psutil.Process(self.root_pid)
        return True

    def sample(self) -> Sample:
        """One pass over the job's processes and /dev/shm (none without psutil)."""
        if not self._started():
            return Sample(0, self.done_cpu, 0, 0, 0.0)
        psutil = self._psutil
        t0 = time.thread_time()  # the pass's own CPU time: what it costs the node, whatever the load
        try:
            found = descendants(self.root_pid)
            procs = self.root.children(recursive=True) if found is None else _processes(psutil, found)
        except (psutil.Error, OSError):  # telemetry never takes the agent down
            procs = []
        live_cpu, rss, seen = 0.0, 0, 0
        direct: dict[tuple[int, float], float] = {}
        for p in procs:
            if p.pid in self.exclude:
                continue
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    mem = p.memory_info()
                    ppid = p.ppid()
                    started = p.create_time()
            except psutil.Error:  # gone meanwhile (or a zombie: its figures are in its parent's when reaped)
                continue
            cpu = t.user + t.system + t.children_user + t.children_system
            live_cpu += cpu
            rss += max(0, mem.rss - mem.shared)
            seen += 1
            if ppid == self.root.pid:
                direct[(p.pid, started)] = cpu
        for key, cpu in self.last.items():
            if key not in direct:
                self.done_cpu += cpu  # reaped by the agent: its last figure is all we will know
        self.last = direct
        try:
            shm = shm_used(self.shm_path) if self.shm_private else job_shm_files(self.shm_path, self.shm_before)
        except OSError:
            shm = 0
        return Sample(seen, self.done_cpu + live_cpu, rss, shm, time.thread_time() - t0)
