"""Array jobs and dependencies through the real `mnp` command on isolated local nodes: concurrency proven from the
records' transition times, N_TO_N and SEQUENTIAL across two `mnp launch` processes, failures named, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, run_mnp, write_job

pytestmark = pytest.mark.namespaces
FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


def _status(home: Path, ref: str) -> dict[str, Any]:
    p = run_mnp(["status", "--json", ref], home)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)  # type: ignore[no-any-return]


def _ts(job: dict[str, Any], state: str) -> float:
    return next(t["ts"] for t in job["transitions"] if t["state"] == state)


def _end(job: dict[str, Any]) -> float:
    return next(t["ts"] for t in job["transitions"] if t["state"] in FINAL)


def _popen(args: list[str], home: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "MNP_HOME": str(home)}
    env.pop("MNP_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "mnp", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)


def _wait_record(home: Path, ref: str, state: str | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = run_mnp(["status", "--json", ref], home)
        if p.returncode == 0 and (state is None or json.loads(p.stdout)["state"] == state):
            return
        time.sleep(0.2)
    raise AssertionError(f"job {ref} not {state or 'recorded'} within {timeout}s")


def test_array_of_6_two_at_a_time(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "arr.yaml", name="arr6", nodes=2, ranks_per_node=1, array={"size": 6},
                    command=["sh", "-c", "echo IDX $MNP_ARRAY_INDEX $AWS_BATCH_JOB_ARRAY_INDEX $MNP_JOB_ID; sleep 0.5"])
    p = run_mnp(["launch", "--max-concurrency", "2", "--json", str(job)], mnp_home, timeout=300)
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    parent = result["job_id"]
    assert result["state"] == "SUCCEEDED" and result["succeeded"] == list(range(6)) and result["failed"] == []
    assert f"mnp: array {parent} SUCCEEDED: 6 of 6 succeeded" in p.stderr
    # every rank of every child saw its index, under both names, and its own job id <parent>:<index>
    seen = sorted(line.split("IDX ", 1)[1] for line in p.stderr.splitlines() if "IDX " in line)
    assert seen == sorted(f"{i} {i} {parent}:{i}" for i in range(6) for _ in range(2))  # 2 ranks each
    rec = _status(mnp_home, "arr6")
    kids = rec["children"]
    assert [k["job_id"] for k in kids] == [f"{parent}:{i}" for i in range(6)]
    assert all(k["state"] == "SUCCEEDED" and k["array_index"] == i for i, k in enumerate(kids))
    # never more than 2 children between their start (RUNNABLE) and their end, by the records' own times
    spans = [(_ts(k, "RUNNABLE"), _end(k)) for k in kids]
    for start, _ in spans:
        assert sum(1 for s, e in spans if s <= start < e) <= 2, spans
    # concurrent children ran on their own nodes (their own network)
    for i, (s1, e1) in enumerate(spans):
        for j, (s2, e2) in enumerate(spans[i + 1:], i + 1):
            if s1 < e2 and s2 < e1:
                assert {n["address"] for n in kids[i]["nodes"]}.isdisjoint(n["address"] for n in kids[j]["nodes"])
    text = run_mnp(["status", "arr6"], mnp_home).stdout
    assert "children  6: 6 SUCCEEDED" in text and f"{parent}:5" in text
    one = run_mnp(["status", f"{parent}:3"], mnp_home)
    assert one.returncode == 0 and f"array     child 3 of {parent}" in one.stdout and "RUNNING" in one.stdout


def test_failing_child_fails_the_array_and_is_named(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    p = run_mnp(["run", "-J", "arrfail", "--array", "4", "--max-concurrency", "2", "sh", "-c",
                 "exit $(( MNP_ARRAY_INDEX == 2 ? 3 : 0 ))"], mnp_home, timeout=300)
    assert p.returncode == 3, p.stderr  # the failed child's own exit code
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("mnp: array ") and "FAILED: 3 of 4 succeeded; 2 FAILED (exit 3)" in last, p.stderr
    rec = _status(mnp_home, "arrfail")
    assert rec["state"] == "FAILED" and "child 2 FAILED" in rec["reason"]
    assert [k["state"] for k in rec["children"]] == ["SUCCEEDED", "SUCCEEDED", "FAILED", "SUCCEEDED"]


def test_n_to_n_child_waits_for_its_partner(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    first = _popen(["run", "-J", "stage1", "--array", "3", "--max-concurrency", "1", "sh", "-c", "sleep 1"], mnp_home)
    try:
        _wait_record(mnp_home, "stage1")
        second = run_mnp(["run", "-J", "stage2", "--array", "3", "--depends-on", "stage1:N_TO_N", "true"], mnp_home,
                         timeout=300)
        assert first.wait(120) == 0, first.communicate()[1]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert second.returncode == 0, second.stderr
    one, two = _status(mnp_home, "stage1"), _status(mnp_home, "stage2")
    assert two["info"]["depends_on"] == [f"{one['job_id']}:N_TO_N"]
    for a, b in zip(one["children"], two["children"]):
        assert _ts(b, "RUNNABLE") >= _end(a), (a["transitions"], b["transitions"])
    # N_TO_N, not the whole array: child 0 of stage2 did not wait for stage1's last child
    assert _ts(two["children"][0], "RUNNABLE") < _end(one["children"][2])
    assert "PENDING" in [t["state"] for t in two["children"][2]["transitions"]]


def test_sequential_children_one_after_another(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    first = _popen(["run", "-J", "prep", "sh", "-c", "sleep 1"], mnp_home)
    try:
        _wait_record(mnp_home, "prep")
        seq = run_mnp(["run", "-J", "seq", "--array", "3", "--depends-on", "prep:SEQUENTIAL", "sh", "-c",
                       "sleep 0.3"], mnp_home, timeout=300)
        assert first.wait(120) == 0, first.communicate()[1]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert seq.returncode == 0, seq.stderr
    prep, kids = _status(mnp_home, "prep"), _status(mnp_home, "seq")["children"]
    assert _ts(kids[0], "RUNNABLE") >= _end(prep)
    for before, after in zip(kids, kids[1:]):  # no concurrency limit given: the order is SEQUENTIAL's
        assert _ts(after, "RUNNABLE") >= _end(before)


def test_failed_dependency_fails_the_dependent_job(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    first = _popen(["run", "-J", "breaks", "sh", "-c", "sleep 4; exit 4"], mnp_home)  # outlives after's start
    try:
        _wait_record(mnp_home, "breaks")
        after = run_mnp(["run", "-J", "after", "--depends-on", "breaks", "true"], mnp_home, timeout=120)
        assert first.wait(120) == 4
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    dep = _status(mnp_home, "breaks")["job_id"]
    assert after.returncode == 1, after.stderr
    rec = _status(mnp_home, "after")
    assert rec["state"] == "FAILED" and rec["reason"] == f"dependency {dep} FAILED"
    assert [t["state"] for t in rec["transitions"]] == ["SUBMITTED", "PENDING", "FAILED"]
    assert rec["state_times"]["PENDING"] > 0
    missing = run_mnp(["run", "--depends-on", "no-such-job", "true"], mnp_home)
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0
    assert "--depends-on 'no-such-job'" in missing.stderr and "no such job" in missing.stderr


def test_stuck_in_pending_names_the_dependency_and_notifies(tmp_path: Path, mnp_home: Path,
                                                            no_leftovers: None) -> None:
    first = _popen(["run", "-J", "slow", "sh", "-c", "sleep 30"], mnp_home)
    sink = tmp_path / "alert.json"
    try:
        _wait_record(mnp_home, "slow")
        p = run_mnp(["run", "-J", "waits", "--depends-on", "slow", "--transit-timeout", "1", "--on-stuck", "fail",
                     "--notify", f"cat > {sink}; exit 7", "true"], mnp_home, timeout=120)
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(60)
    slow = _status(mnp_home, "slow")["job_id"]
    assert p.returncode == 124, p.stderr
    alert = json.loads(sink.read_text())
    assert alert["state"] == "PENDING" and alert["waiting_for"] == [f"dependency {slow} (RUNNING)"]
    warnings = [ln for ln in p.stderr.splitlines() if ln.startswith("mnp: warning: job")]
    assert len(warnings) == 1 and "stuck in PENDING" in warnings[0], p.stderr
    assert "--notify: " in p.stderr and "exited with status 7" in p.stderr  # reported, and nothing more
    rec = _status(mnp_home, "waits")
    assert rec["state"] == "FAILED" and rec["stuck"] and rec["info"]["alerts"][0]["line"] == alert["line"]
    listed = run_mnp(["list", "--stuck"], mnp_home).stdout
    assert rec["job_id"] in listed and "stuck: PENDING" in listed


def test_sigterm_cancels_running_and_unstarted_children(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    proc = _popen(["run", "-J", "stopme", "--array", "4", "--max-concurrency", "1", "sleep", "60"], mnp_home)
    try:
        _wait_record(mnp_home, "stopme:0", "RUNNING", timeout=120)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    rec = _status(mnp_home, "stopme")
    assert rec["state"] == "CANCELLED"
    assert [k["state"] for k in rec["children"]] == ["CANCELLED"] * 4
    assert "RUNNING" in [t["state"] for t in rec["children"][0]["transitions"]]
    assert [t["state"] for t in rec["children"][3]["transitions"]] == ["SUBMITTED", "CANCELLED"]


def test_hosts_are_shared_out_so_concurrent_children_never_share_one(tmp_path: Path, mnp_home: Path,
                                                                     no_leftovers: None) -> None:
    """4 SSH hosts, children of 2 nodes: 2 groups of hosts, so at most 2 children at once (though 4 are allowed),
    each on a group of its own."""
    from sshnodes import SshNodes

    (tmp_path / "ssh").mkdir()
    hosts = SshNodes(4, tmp_path / "ssh").start()
    try:
        hf = tmp_path / "hostfile"
        hf.write_text("".join(f"{a}\n" for a in hosts.addresses))
        p = run_mnp(["run", *hosts.ssh_args(), "--hostfile", str(hf), "-N", "2", "--array", "4",
                     "--max-concurrency", "4", "-J", "shared", "--transport", "tcp", "sh", "-c",
                     "echo ON $MNP_ARRAY_INDEX $(hostname); sleep 0.5"], mnp_home, timeout=300)
        assert p.returncode == 0, p.stderr
        kids = _status(mnp_home, "shared")["children"]
        groups = [sorted(n["address"] for n in k["nodes"]) for k in kids]
        assert all(g in (sorted(hosts.addresses[:2]), sorted(hosts.addresses[2:])) for g in groups), groups
        spans = [(_ts(k, "RUNNABLE"), _end(k)) for k in kids]
        for i, (s1, e1) in enumerate(spans):
            for j, (s2, e2) in enumerate(spans[i + 1:], i + 1):
                if s1 < e2 and s2 < e1:  # ran at the same time: never on the same host
                    assert set(groups[i]).isdisjoint(groups[j]), (spans, groups)
        assert sorted(int(ln.split("ON ", 1)[1].split()[0]) for ln in p.stdout.splitlines() if "ON " in ln) == \
            sorted(list(range(4)) * 2)
    finally:
        hosts.stop()


def test_cancel_of_an_unstarted_child_cancels_that_child_alone(tmp_path: Path, mnp_home: Path,
                                                              no_leftovers: None) -> None:
    """Before: `mnp cancel JOB:2` of a child still waiting signalled the array's process (its record's owner until
    the child starts), and the whole array was cancelled."""
    proc = _popen(["run", "-J", "three", "--array", "3", "--max-concurrency", "1", "sh", "-c", "sleep 2"], mnp_home)
    try:
        _wait_record(mnp_home, "three:0", "RUNNING", timeout=120)
        c = run_mnp(["cancel", "three:2"], mnp_home)
        assert c.returncode == 0 and "CANCELLED before it started" in c.stdout, c.stderr
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rec = _status(mnp_home, "three")
    assert [k["state"] for k in rec["children"]] == ["SUCCEEDED", "SUCCEEDED", "CANCELLED"], err
    assert [t["state"] for t in rec["children"][2]["transitions"]] == ["SUBMITTED", "CANCELLED"]
    assert proc.returncode != 0 and "2 CANCELLED" in err  # the array did not succeed whole, and says which
