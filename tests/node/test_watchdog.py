"""The node watchdog with real processes: a throwaway parent plays the agent, starts a watchdog and ranks, and is
then killed with SIGKILL (or closes cleanly); what the watchdog does to the ranks and to a /dev/shm stand-in is
checked from outside with psutil."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from mnp.fabric.shm import mpich_world_id
from mnp.node.watchdog import members

# The parent ("agent"): argv = shm_dir grace kvsname mode, mode in {crash, close, fds, pdeathsig}. It prints one JSON
# line with the pids, then (mode close) closes the watchdog and prints "closed", then sleeps until it is killed.
PARENT = r"""
import json, os, subprocess, sys, time
from mnp.node.watchdog import Watchdog, die_with_parent
shm_dir, grace, kvs, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if mode == "pdeathsig":
    p = subprocess.Popen(["sleep", "1000"], preexec_fn=die_with_parent(), **quiet)
    print(json.dumps({"ranks": [p.pid]}), flush=True)
    time.sleep(1000)
stray_r, stray_w = os.pipe()
os.set_inheritable(stray_r, True)  # an inheritable descriptor the watchdog must not keep
wd = Watchdog.start(shm_dir=shm_dir, grace=grace)
# rank A: a session leader with a child in its group; rank B: ignores SIGTERM, one child in its group and one in a
# group of its own (same session)
a = subprocess.Popen(["sh", "-c", "sleep 1000 & exec sleep 1000"], start_new_session=True, **quiet)
b = subprocess.Popen([sys.executable, "-c", sys.argv[5], sys.argv[6]], start_new_session=True, **quiet)
for r in (a, b):
    wd.add_group(r.pid)
wd.add_shm(kvs)
wd.add_dir(sys.argv[7])
print(json.dumps({"watchdog": wd.pid, "ranks": [a.pid, b.pid], "stray": stray_r}), flush=True)
if mode == "close":
    wd.close()
    print("closed", flush=True)
time.sleep(1000)
"""

# Rank B: notes SIGTERM in a file and carries on (only SIGKILL ends it); starts its two children.
STUBBORN = r"""
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, lambda *_: open(sys.argv[1], "a").write("TERM\n"))
kids = [subprocess.Popen(["sleep", "1000"]), subprocess.Popen(["sleep", "1000"], process_group=0)]
while True:
    time.sleep(1000)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for(what: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.05)
    return what()


class Scene:
    """One parent with its watchdog and ranks; every process it made is killed at the end, whatever happened."""

    def __init__(self, tmp: Path, mode: str, grace: float = 2.0) -> None:
        self.shm = tmp / "shm"
        self.shm.mkdir()
        self.private = tmp / "agent-private"
        self.private.mkdir()
        (self.private / "rsh.sock").write_text("x")
        self.term_file = tmp / "term"
        self.kvs = f"kvs_{os.getpid()}_0_test"
        self.parent = subprocess.Popen(
            [sys.executable, "-c", PARENT, str(self.shm), str(grace), self.kvs, mode, STUBBORN, str(self.term_file),
             str(self.private)], stdout=subprocess.PIPE, text=True)
        assert self.parent.stdout is not None
        self.info = json.loads(self.parent.stdout.readline())
        self.ranks: list[int] = self.info["ranks"]
        self.tree: list[int] = list(self.ranks)

    def wait_tree(self, want: int) -> list[int]:
        """Every process of the ranks, once there are ``want`` of them (the ranks' children take a moment)."""
        def count() -> bool:
            self.tree = list(self.ranks)
            for pid in self.ranks:
                try:
                    self.tree += [c.pid for c in psutil.Process(pid).children(recursive=True)]
                except psutil.NoSuchProcess:
                    pass
            return len(self.tree) >= want
        assert _wait_for(count, 10), f"the ranks' processes did not all start: {self.tree}"
        return self.tree

    def kill_parent(self) -> None:
        os.kill(self.parent.pid, signal.SIGKILL)
        self.parent.wait(5)

    def cleanup(self) -> None:
        stray = members(self.ranks)  # by session too: a child in a group of its own is found even if not yet counted
        for pid in [self.parent.pid, self.info.get("watchdog", 0), *self.tree, *stray]:
            if pid:
                for kill in (os.killpg, os.kill):
                    try:
                        kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
        self.parent.wait(5)
        assert self.parent.stdout is not None
        self.parent.stdout.close()


@pytest.fixture
def scenes(tmp_path: Path) -> Iterator[Callable[..., Scene]]:
    made: list[Scene] = []

    def make(mode: str, grace: float = 2.0) -> Scene:
        made.append(Scene(tmp_path, mode, grace))
        return made[-1]

    yield make
    for s in made:
        s.cleanup()


def _fake_segments(scene: Scene) -> tuple[list[Path], list[Path]]:
    """Files in the /dev/shm stand-in: the job's (MPICH by kvsname, libfabric by rank pid) and others'."""
    ours = [scene.shm / f"mpich_shm_{mpich_world_id(scene.kvs):x}_0", scene.shm / f"{scene.ranks[0]}:0:0"]
    others = [scene.shm / "mpich_shm_0badf00d_0", scene.shm / "notes.txt"]
    for p in ours + others:
        p.write_bytes(b"\0" * 64)
    return ours, others


def test_agent_killed_ranks_and_their_files_go(scenes: Callable[..., Scene]) -> None:
    s = scenes("crash", grace=1.0)
    tree = s.wait_tree(5)  # rank A and its child, rank B and its two children
    ours, others = _fake_segments(s)
    assert all(_alive(p) for p in tree) and _alive(s.info["watchdog"])
    t0 = time.monotonic()
    s.kill_parent()
    assert _wait_for(lambda: not any(_alive(p) for p in tree), 1.0 + 3.0), \
        f"still running {time.monotonic() - t0:.1f}s after the agent died: {[p for p in tree if _alive(p)]}"
    # rank B was asked first (SIGTERM, which it only notes) and killed after the grace
    assert s.term_file.read_text().startswith("TERM")
    assert _wait_for(lambda: not _alive(s.info["watchdog"]), 3.0), "the watchdog did not exit"
    assert [p for p in ours if p.exists()] == [], "the job's shared-memory files were not removed"
    assert all(p.exists() for p in others), "another job's files were removed"
    assert not s.private.exists(), "the agent's private directory was not removed"


def test_plain_ranks_go_within_seconds_of_the_agent(scenes: Callable[..., Scene]) -> None:
    """The case that matters most: ``sleep`` ranks (SIGTERM ends them) are gone well inside 3 s."""
    s = scenes("crash", grace=2.0)
    s.wait_tree(5)
    a = [s.ranks[0], *[c.pid for c in psutil.Process(s.ranks[0]).children()]]  # rank A and its child
    assert len(a) == 2
    t0 = time.monotonic()
    s.kill_parent()
    assert _wait_for(lambda: not any(_alive(p) for p in a), 3.0), f"rank A's group is still there: {a}"
    assert time.monotonic() - t0 < 3.0


def test_clean_close_leaves_everything_alone(scenes: Callable[..., Scene]) -> None:
    s = scenes("close", grace=0.3)
    tree = s.wait_tree(5)
    ours, _ = _fake_segments(s)
    assert s.parent.stdout is not None and s.parent.stdout.readline().strip() == "closed"
    assert not _alive(s.info["watchdog"])  # close() waited for it
    s.kill_parent()
    time.sleep(1.5)  # far past the grace: a watchdog that acted would have acted by now
    assert all(_alive(p) for p in tree)
    assert all(p.exists() for p in ours) and s.private.exists()
    assert not s.term_file.exists()


def test_watchdog_holds_nothing_of_the_agent(scenes: Callable[..., Scene]) -> None:
    """Its own session and group, /dev/null for stdin and stdout, and of the agent's descriptors only the pipe."""
    s = scenes("crash")
    wd, parent = s.info["watchdog"], s.parent.pid
    assert os.getsid(wd) == wd and os.getpgid(wd) == wd
    assert os.getsid(wd) != os.getsid(parent) and os.getpgid(wd) != os.getpgid(parent)
    fds: dict[int, str] = {}

    def settled() -> bool:  # while the watchdog's Python starts up it has its own files open for a moment
        fds.clear()
        for f in os.listdir(f"/proc/{wd}/fd"):
            try:
                fds[int(f)] = os.readlink(f"/proc/{wd}/fd/{f}")
            except OSError:
                pass
        return len([f for f in fds if f > 2]) == 1

    _wait_for(settled, 5)
    assert fds[0] == "/dev/null" and fds[1] == "/dev/null"
    extra = {f: t for f, t in fds.items() if f > 2}
    assert len(extra) == 1 and next(iter(extra.values())).startswith("pipe:"), extra
    assert s.info["stray"] not in extra or extra[s.info["stray"]] != os.readlink(
        f"/proc/{parent}/fd/{s.info['stray']}")
    # and the ranks do not hold the agent's end of the pipe (else EOF would never come)
    ends = {os.readlink(f"/proc/{parent}/fd/{f}") for f in os.listdir(f"/proc/{parent}/fd")}
    for rank in s.wait_tree(5):
        held = {os.readlink(f"/proc/{rank}/fd/{f}") for f in os.listdir(f"/proc/{rank}/fd")}
        assert not (held & ends & {t for t in extra.values()}), (rank, held)


def test_die_with_parent_preexec(scenes: Callable[..., Scene]) -> None:
    s = scenes("pdeathsig")
    child = s.ranks[0]
    assert _alive(child)
    s.kill_parent()
    assert _wait_for(lambda: not _alive(child), 2.0), "the child outlived its parent"


def test_members_finds_group_and_session_but_not_zombies() -> None:
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    leader = subprocess.Popen([sys.executable, "-c", STUBBORN, "/dev/null"], start_new_session=True, **quiet)  # type: ignore[call-overload]
    done = subprocess.Popen(["true"], start_new_session=True)
    try:
        assert _wait_for(lambda: len(members([leader.pid])) == 3, 10), members([leader.pid])
        kids = psutil.Process(leader.pid).children()
        assert {k.pid for k in kids} | {leader.pid} == set(members([leader.pid]))
        assert any(os.getpgid(k.pid) != leader.pid for k in kids)  # found by session, not by group
        time.sleep(0.2)  # `true` has exited but is not reaped: a zombie is no member
        assert members([done.pid]) == []
    finally:
        for pid in [leader.pid, *members([leader.pid])]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        leader.wait(5)
        done.wait(5)
