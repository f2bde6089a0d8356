"""`mnp cancel` and `mnp logs -f` on a real running job, from another shell (the real `mnp` processes on isolated
local nodes); cancel's refusals (not running, unknown, a pid that is not mnp's)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_mnp

from mnp.records import Records

TICKER = [sys.executable, "-c", "import os, time\nfor i in range(600): print('tick', os.environ['MNP_RANK'], i, "
                                "flush=True); time.sleep(0.05)"]


def _mnp(args: list[str], home: Path, **kw: object) -> subprocess.Popen[str]:
    env = {**os.environ, "MNP_HOME": str(home)}
    env.pop("MNP_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "mnp", *args], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)  # type: ignore[call-overload]


def _wait_for(check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


@pytest.mark.namespaces
def test_cancel_and_follow_a_running_job(mnp_home: Path, no_leftovers: None) -> None:
    job = _mnp(["run", "-N", "2", "-n", "2", "-J", "ticker", "--grace", "1", *TICKER], mnp_home)
    try:
        first = job.stderr.readline()  # printed at start, while the job runs
        assert first.startswith("mnp: job ") and first.endswith(" (ticker): 2 node(s), 2 rank(s)\n"), first
        job_id = first.split()[2]
        logs = mnp_home / "jobs" / job_id / "logs"
        _wait_for(lambda: all((logs / f"node{n}.rank{n}.out").exists() and
                              (logs / f"node{n}.rank{n}.out").stat().st_size > 0 for n in (0, 1)))
        assert job.poll() is None, "the job ended before it was cancelled"
        follow = _mnp(["logs", "-f", job_id], mnp_home)
        time.sleep(1)
        assert follow.poll() is None  # following while the job runs
        t0 = time.monotonic()
        c = run_mnp(["cancel", job_id], mnp_home, timeout=60)
        assert c.returncode == 0, c.stderr
        assert c.stdout == f"job {job_id} CANCELLED: interrupted by SIGTERM (exit 143)\n"
        assert time.monotonic() - t0 < 30
        assert job.wait(timeout=30) == 143
        out, err = follow.communicate(timeout=30)  # ends by itself once the job is final
        assert follow.returncode == 0, err
    finally:
        if job.poll() is None:
            job.kill()
        job.communicate()
    followed = out.splitlines()
    assert {line.split("]")[0] for line in followed} == {"[node 0 rank 0", "[node 1 rank 1"}
    kept = run_mnp(["logs", job_id, "--stdout"], mnp_home).stdout.splitlines()
    assert sorted(followed) == sorted(kept) and len(kept) > 10  # every line, once, the last ones too
    rec = json.loads(run_mnp(["status", "--json", job_id], mnp_home).stdout)
    assert rec["state"] == "CANCELLED" and rec["exit_code"] == 143
    again = run_mnp(["cancel", job_id], mnp_home, timeout=60)
    assert again.returncode == 1 and again.stderr == f"mnp: error: job {job_id} is not running: CANCELLED " \
                                                     "(exit 143)\n"


@pytest.mark.noroot
def test_cancel_refuses_what_it_should_not_signal(mnp_home: Path) -> None:
    unknown = run_mnp(["cancel", "feedbeef"], mnp_home, timeout=60)
    assert unknown.returncode == 2 and unknown.stderr.startswith("mnp: error: job 'feedbeef': no such job")
    records = Records(mnp_home)
    records.create("a000000001", "imposter", 1, ["x"], None)
    records.transition("a000000001", "RUNNING")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        # a live pid that is not an mnp process (a reused pid): never signalled
        records.db.execute("UPDATE jobs SET owner_pid=? WHERE id='a000000001'", (sleeper.pid,))
        p = run_mnp(["cancel", "imposter"], mnp_home, timeout=60)
        assert p.returncode == 1 and p.stderr == f"mnp: error: job a000000001: pid {sleeper.pid} is not its mnp " \
                                                 "process any more; not signalling it\n"
        assert sleeper.poll() is None
        records.db.execute("UPDATE jobs SET owner_host='elsewhere' WHERE id='a000000001'")
        p = run_mnp(["cancel", "imposter"], mnp_home, timeout=60)
        assert p.returncode == 1 and "runs on elsewhere" in p.stderr and "cancel it there" in p.stderr
    finally:
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait()
    assert Records(mnp_home).get("imposter").state == "RUNNING"  # nothing changed it


@pytest.mark.noroot
def test_follow_ends_when_the_coordinator_is_gone(mnp_home: Path) -> None:
    """A record left RUNNING by a coordinator that died: `logs -f` prints what was kept and ends."""
    records = Records(mnp_home)
    d = records.create("b000000001", "orphan", 1, ["x"], None)
    (d / "logs" / "node0.rank0.out").write_text("one\ntwo, no newline")
    records.transition("b000000001", "RUNNING")
    records.db.execute("UPDATE jobs SET owner_pid=? WHERE id='b000000001'", (2**22 + 4321,))  # a pid that is gone
    p = run_mnp(["logs", "-f", "orphan"], mnp_home, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "[node 0 rank 0] one\n[node 0 rank 0] two, no newline\n"
    assert Records(mnp_home).get("orphan").state == "FAILED"
