"""Ctrl-C while local nodes come up (issue #8): exit 130, one line, a final record, and nothing left behind.

A terminal's Ctrl-C is SIGINT to the whole foreground process group, so the tests send it to a process group, not
to one pid. Leftovers are judged per try: namespaces, links and run files of a coordinator that is gone (a
concurrent job of someone else's has a live one), and every process that outlived `mnp` -- a small subreaper
between the test and `mnp` inherits them, so no process of another test can be mistaken for ours.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, leftovers, write_job

from mnp.cluster.local import RUN_DIR

pytestmark = pytest.mark.namespaces

# What a Ctrl-C could leave: `leftovers()` entries that name a local cluster's short job id.
_OWNED = re.compile(r"^(?:netns mnp-|link mnpb-|link mv|run file .*/)([0-9a-f]{6})")
FINAL = {"FAILED", "CANCELLED"}

# Stands between the test and `mnp` as a shell would (it ignores Ctrl-C, the job gets it); as a child subreaper
# it inherits whatever `mnp` leaves running, and lists those processes (then kills them) once `mnp` has exited.
REAPER = r"""
import ctypes, json, os, signal, subprocess, sys
signal.signal(signal.SIGINT, lambda *_: None)  # a handler, not SIG_IGN: exec resets it, mnp gets the default
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
mnp = subprocess.Popen(sys.argv[3:])
os.write(int(sys.argv[2]), b"started")  # the test's clock starts now
os.close(int(sys.argv[2]))
rc = mnp.wait()
import psutil
left = psutil.Process().children(recursive=True)
with open(sys.argv[1], "w") as f:
    json.dump([f"{p.pid} {p.name()} {p.status()}" for p in left], f)
for p in left:
    try:
        p.kill()
    except psutil.Error:
        pass
psutil.wait_procs(left, timeout=5)
sys.exit(rc if rc >= 0 else 128 - rc)
"""


def _mnp() -> list[str]:
    script = Path(sys.executable).with_name("mnp")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mnp"]


def _stale() -> set[str]:
    """Leftover local-cluster objects whose coordinator is gone (the run file names a dead pid, or is missing)."""
    from mnp.pids import pid_alive

    found = set()
    for entry in leftovers():
        m = _OWNED.match(entry)
        if not m:
            continue
        try:
            pid = int((RUN_DIR / f"{m[1]}.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = 0
        if not (pid and pid_alive(pid)):
            found.add(entry)
    return found


def _jobs(home: Path) -> list[dict[str, object]]:
    p = subprocess.run([*_mnp(), "list", "--json"], check=False, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "MNP_HOME": str(home)})
    assert p.returncode == 0, p.stderr
    jobs = json.loads(p.stdout)
    assert isinstance(jobs, list)
    return jobs


def _status(home: Path, job_id: str) -> dict[str, object]:
    p = subprocess.run([*_mnp(), "status", "--json", job_id], check=False, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "MNP_HOME": str(home)})
    assert p.returncode == 0, p.stderr
    record = json.loads(p.stdout)
    assert isinstance(record, dict)
    return record


def test_ctrl_c_during_bringup(tmp_path: Path) -> None:
    job = write_job(tmp_path / "sleepy.yaml", name="sleepy", command="sleep 5", timeout=60)
    reaper = tmp_path / "reaper.py"
    reaper.write_text(REAPER)
    stale_before = _stale()
    problems: list[str] = []
    recorded = 0
    delays = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.34, 0.38, 0.42, 0.46, 0.5, 0.6, 0.75]
    for k, delay in enumerate(delays):
        home = tmp_path / f"home{k}"
        home.mkdir()
        report = tmp_path / f"left{k}.json"
        started, tell = os.pipe()
        p = subprocess.Popen([sys.executable, str(reaper), str(report), str(tell), *_mnp(), "launch", "--nodes", "8",
                              str(job)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, cwd=ROOT, env={**os.environ, "MNP_HOME": str(home)},
                             pass_fds=(tell,))
        os.close(tell)
        try:
            assert os.read(started, 16) == b"started", "the reaper did not start mnp"
            os.close(started)
            time.sleep(delay)
            os.killpg(p.pid, signal.SIGINT)
            _, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.communicate()
        what = f"Ctrl-C after {delay}s"
        if p.returncode != 130:
            problems.append(f"{what}: exit {p.returncode}, stderr {err.strip()[-300:]!r}")
        if "Traceback" in err or "KeyboardInterrupt" in err:
            problems.append(f"{what}: a traceback on stderr: {err.strip()[-300:]!r}")
        said = [line for line in err.splitlines() if "interrupted" in line.lower()]
        if len(said) != 1:
            problems.append(f"{what}: {len(said)} 'interrupted' lines on stderr: {err.strip()[-300:]!r}")
        for j in _jobs(home):
            recorded += 1
            state = _status(home, str(j["job_id"]))["state"]
            if state not in FINAL:
                problems.append(f"{what}: job {j['job_id']} left {state}")
        processes = json.loads(report.read_text())
        if processes:
            problems.append(f"{what}: processes outlived mnp: {processes}")
        if stale := _stale() - stale_before:
            problems.append(f"{what}: left behind: {sorted(stale)}")
            stale_before |= stale
    assert not problems, "\n".join(problems)
    assert recorded >= 3, f"only {recorded} of {len(delays)} tries got as far as a job record: tries too early"


# Drives the provider alone: create() cut short by KeyboardInterrupt (Python's default Ctrl-C) wherever it lands,
# then teardown(). Prints where the interrupt landed.
CUT = r"""
import ctypes, signal, sys, time, traceback, psutil
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: a node init orphaned by its keeper comes here
from mnp.cluster.local import LocalCluster
from mnp.errors import ClusterError
from mnp.records import new_job_id
cluster = LocalCluster(new_job_id(), int(sys.argv[1]))
print(cluster.short, flush=True)
where = "not interrupted"
try:
    print("GO", flush=True)
    cluster.create(64 << 20)
    where = "after create"
    time.sleep(3)
except KeyboardInterrupt as e:
    if where != "after create":
        frames = [f.name for f in traceback.extract_tb(e.__traceback__)]
        where = "in create: " + " > ".join(frames[frames.index("create"):])
except ClusterError as e:
    where = f"ERROR {e}"
finally:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cluster.teardown()
left = psutil.Process().children(recursive=True)
print(where + (f" LEFT {[(c.pid, c.name()) for c in left]}" if left else ""), flush=True)
for c in left:
    c.kill()
"""


def test_create_cut_short_anywhere_then_teardown(tmp_path: Path) -> None:
    script = tmp_path / "cut.py"
    script.write_text(CUT)
    stale_before = _stale()
    landed: list[str] = []
    problems: list[str] = []
    for k in range(14):
        p = subprocess.Popen([sys.executable, str(script), "12"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True, cwd=ROOT)
        try:
            assert p.stdout is not None
            short = p.stdout.readline().strip()
            assert p.stdout.readline().strip() == "GO"
            time.sleep(0.006 * k)
            os.killpg(p.pid, signal.SIGINT)
            out, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.communicate()
        where = out.strip()
        landed.append(where)
        if p.returncode != 0 or where.startswith("ERROR") or "LEFT" in where or "Traceback" in err:
            problems.append(f"try {k}: exit {p.returncode}, {where}, stderr {err.strip()[-300:]!r}")
        if stale := {e for e in _stale() - stale_before if short in e}:
            problems.append(f"try {k} ({where}): left behind: {sorted(stale)}")
    assert not problems, "\n".join(problems)
    assert sum(w.startswith("in create") for w in landed) >= 3, f"the interrupts missed create: {landed}"
