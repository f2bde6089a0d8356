"""The node's telemetry sampler on this test's own child processes: real psutil, real processes (a child holding
memory, its child holding more and then burning CPU), a real directory standing for a shared /dev/shm. No root:
these run wherever psutil does."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnp.control import messages as m
from mnp.errors import UsageError
from mnp.node.telemetry import Sampler, job_shm_files, telemetry_interval

pytestmark = pytest.mark.noroot

MiB = 1 << 20

# The grandchild: holds 16 MiB, says so, waits for its stdin to close, burns 0.5 s of CPU, exits.
GRAND = ("import sys, time\nb = bytearray(16 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
         "print('g', flush=True)\nsys.stdin.read()\nwhile time.process_time() < 0.5: pass\n")
# The child: holds 48 MiB, starts the grandchild, then steps through the test's lines.
CHILD = ("import subprocess, sys\nb = bytearray(48 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
         f"g = subprocess.Popen([sys.executable, '-c', {GRAND!r}], stdin=subprocess.PIPE, stdout=subprocess.PIPE)\n"
         "g.stdout.readline()\nprint('two', flush=True)\nsys.stdin.readline()\n"
         "g.stdin.close(); g.wait()\nprint('one', flush=True)\nsys.stdin.readline()\n")


@pytest.fixture
def child() -> Iterator[subprocess.Popen[str]]:
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
        p.wait(30)


def _step(p: subprocess.Popen[str], expect: str, send: bool = True) -> None:
    assert p.stdin is not None and p.stdout is not None
    if send:
        p.stdin.write("\n")
        p.stdin.flush()
    assert p.stdout.readline().strip() == expect


def test_tree_memory_and_cpu_of_children_reaped_and_gone(tmp_path: Path, child: subprocess.Popen[str]) -> None:
    s = Sampler(1.0, shm_private=False, shm_path=str(tmp_path))
    _step(child, "two", send=False)
    both = s.sample()
    assert both.procs == 2  # the child and its child: the whole tree under this process
    assert 64 * MiB <= both.rss < 64 * MiB + 100 * MiB  # 48 + 16 MiB held, plus two interpreters' own
    assert both.cost_s > 0
    _step(child, "one")  # the grandchild burned 0.5 s of CPU, exited and was reaped by the child
    one = s.sample()
    assert one.procs == 1
    assert one.rss <= both.rss - 16 * MiB  # the grandchild's memory is gone with it
    assert one.cpu_s >= 0.5 and one.cpu_s > both.cpu_s  # its CPU is not: the child reaped it (children_*)
    _step(child, "")  # the child ends; this process (the "agent") reaps it
    child.wait(30)
    gone = s.sample()
    assert gone.procs == 0 and gone.rss == 0
    assert gone.cpu_s >= one.cpu_s  # a reaped process keeps the CPU it was last seen with


def test_poll_is_paced_and_quiet_without_processes(tmp_path: Path, child: subprocess.Popen[str]) -> None:
    s = Sampler(2.0, shm_private=False, shm_path=str(tmp_path))
    _step(child, "two", send=False)
    assert s.poll(99.0) is None and s.next_due == 0.0  # not armed: the node started nothing yet, no pass is made
    s.arm(99.5)  # (the agent does it when it starts the job's first process): the first pass a moment later
    assert s.poll(99.6) is None and s.next_due == pytest.approx(99.7)
    first = s.poll(100.0)
    assert isinstance(first, m.Telemetry) and first.procs == 2 and first.rss >= 64 * MiB
    assert first.cpu_pct == 0.0  # nothing to compare with yet
    assert s.poll(101.9) is None  # not due: one message per interval
    _step(child, "one")  # 0.5 s of CPU burnt in between
    second = s.poll(102.0)
    assert isinstance(second, m.Telemetry) and second.cpu_pct > 0 and second.cpu_s >= 0.5
    assert s.poll(103.9) is None
    _step(child, "")
    child.wait(30)
    assert s.poll(104.0) is None  # nothing of the job runs: nothing sent ...
    assert s.next_due == pytest.approx(104.2)  # ... and it looks again soon


def test_excluded_pids_are_not_counted(tmp_path: Path, child: subprocess.Popen[str]) -> None:
    _step(child, "two", send=False)
    s = Sampler(1.0, shm_private=False, shm_path=str(tmp_path), exclude=[child.pid])
    assert s.sample().procs == 1  # only the grandchild


def test_shared_shm_counts_only_this_users_new_files_by_allocated_blocks(tmp_path: Path) -> None:
    (tmp_path / "before").write_bytes(b"x" * (5 * MiB))
    s = Sampler(1.0, shm_private=False, shm_path=str(tmp_path))
    assert s.sample().shm == 0
    (tmp_path / "seg").write_bytes(b"x" * (3 * MiB))
    with open(tmp_path / "sparse", "wb") as f:  # 8 MiB long, 1 MiB touched
        f.truncate(8 * MiB)
        f.write(b"y" * MiB)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "inside").write_bytes(b"z" * MiB)  # only files directly in /dev/shm count
    (tmp_path / "link").symlink_to(tmp_path / "before")
    got = s.sample().shm
    assert 4 * MiB <= got < 4 * MiB + 256 * 1024
    assert job_shm_files(str(tmp_path), []) >= got + 5 * MiB  # with no baseline the old file counts too


@pytest.mark.parametrize("value, expect", [(None, 1.0), ("0", 0.0), ("2.5", 2.5), ("1", 1.0)])
def test_interval_setting(value: str | None, expect: float) -> None:
    env = {} if value is None else {"MNP_TELEMETRY_INTERVAL": value}
    assert telemetry_interval(env) == expect


@pytest.mark.parametrize("value", ["0.5", "x", "-1", "nan"])
def test_bad_interval_names_the_variable(value: str) -> None:
    with pytest.raises(UsageError, match="MNP_TELEMETRY_INTERVAL"):
        telemetry_interval({"MNP_TELEMETRY_INTERVAL": value})


def test_from_handoff() -> None:
    assert Sampler.from_handoff({"telemetry_s": 0}) is None
    slow = Sampler.from_handoff({"telemetry_s": 3, "shm_private": True})
    assert slow is not None and slow.interval == 3 and slow.shm_private
    fast = Sampler.from_handoff({"telemetry_s": 0.1})
    assert fast is not None and fast.interval == 1.0 and not fast.shm_private  # never more than once a second


# A process that starts one child from its main thread and one from a second thread, then waits.
THREADED = ("import subprocess, sys, threading\n"
            "sleep = [sys.executable, '-c', 'import sys; sys.stdin.read()']\n"
            "a = subprocess.Popen(sleep, stdin=subprocess.PIPE)\n"
            "box = []\n"
            "t = threading.Thread(target=lambda: box.append(subprocess.Popen(sleep, stdin=subprocess.PIPE)))\n"
            "t.start(); t.join()\nprint('up', flush=True)\nsys.stdin.readline()\n"
            "for p in (a, box[0]): p.stdin.close(); p.wait()\n")


def test_descendants_are_psutils_and_include_a_threads_children() -> None:
    import os

    import psutil

    from mnp.node.telemetry import descendants

    p = subprocess.Popen([sys.executable, "-c", THREADED], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        _step(p, "up", send=False)
        found = descendants(os.getpid())
        assert found is not None, "this kernel keeps /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN)"
        assert sorted(found) == sorted(c.pid for c in psutil.Process().children(recursive=True))
        assert found[0] == p.pid and len(found) == 3  # the child first, then its two: one forked by a thread
        assert descendants(os.getpid(), proc="/nonexistent") is None  # no lists: the caller scans instead
    finally:
        assert p.stdin is not None
        p.stdin.write("\n")  # its children end when their stdin closes, then it does
        p.stdin.close()
        p.wait(30)


def test_descendants_give_way_to_the_scan_when_threads_outnumber_processes() -> None:
    """A rank with a thread per core makes the children lists dearer than one read per process on the machine:
    then descendants() says None and the sampler scans instead (same answer, psutil's)."""
    import os

    from mnp.node.telemetry import descendants

    machine = sum(1 for name in os.listdir("/proc") if name.isdigit())
    many = ("import sys, threading\nev = threading.Event()\n"
            f"ts = [threading.Thread(target=ev.wait) for _ in range({machine + 100})]\n"
            "[t.start() for t in ts]\nprint('up', flush=True)\nsys.stdin.readline()\nev.set()\n")
    p = subprocess.Popen([sys.executable, "-c", many], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        _step(p, "up", send=False)
        assert descendants(os.getpid()) is None
    finally:
        assert p.stdin is not None
        p.stdin.write("\n")
        p.stdin.close()
        p.wait(30)
    assert descendants(os.getpid()) == []
