"""Telemetry end to end: the real `mnp launch` on isolated local nodes, ranks that hold memory and a /dev/shm
file, the peaks in the job's record and in `mnp status`, and the one line of /dev/shm advice."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import JOBS, run_mnp, write_job

pytestmark = pytest.mark.namespaces

MiB = 1 << 20


def _hog(mem: int, shm: int, seconds: float = 3) -> list[str]:
    return [sys.executable, str(JOBS / "shmhog.py"), str(mem), str(shm), str(seconds)]


def _record(home: Path, job_id: str) -> dict[str, Any]:
    p = run_mnp(["status", "--json", job_id], home)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)  # type: ignore[no-any-return]


def test_peaks_per_node_in_the_record_and_in_status(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "hog.yaml", name="hog", nodes=2, ranks_per_node=1, command=_hog(64, 32))
    p = run_mnp(["launch", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr
    assert "advice" not in p.stderr  # 32 MiB of a 64 MiB /dev/shm: nothing to say
    job_id = p.stderr.split()[2]
    tel = _record(mnp_home, job_id)["info"]["telemetry"]
    assert tel["interval_s"] == 1 and tel["shm_counted"] == "the node's own /dev/shm (all used)"
    assert sorted(tel["nodes"]) == ["0", "1"]
    for node, t in tel["nodes"].items():
        assert t["samples"] >= 1, node
        assert 64 * MiB <= t["peak_rss"] < 128 * MiB, (node, t)  # 64 MiB held + one interpreter's own
        assert 32 * MiB <= t["peak_shm"] < 36 * MiB, (node, t)  # the file, in the node's own tmpfs
        assert t["cpu_s"] > 0 and t["peak_cpu_pct"] >= 0
        assert 1 <= len(t["series"]) <= 120 and max(pt[2] for pt in t["series"]) == t["peak_rss"]
        assert t["sample_ms"]["mean"] > 0
    status = run_mnp(["status", job_id], mnp_home)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert "telemetry every 1s; /dev/shm counted: the node's own /dev/shm (all used)" in lines
    for node in (0, 1):
        assert any(re.fullmatch(rf"  node {node}: cpu peak \d+% \(\d+\.\d cpu-s\), memory peak (6[4-9]|[7-9]\d|1[01]\d)"
                                r"(\.\d)? MiB, /dev/shm peak 3[23](\.\d)? MiB of 64 MiB, \d+ sample\(s\)", line)
                   for line in lines), status.stdout
    assert not any(line.startswith("advice") for line in lines)


def test_shm_use_close_to_shm_size_gets_one_line_of_advice(tmp_path: Path, mnp_home: Path,
                                                           no_leftovers: None) -> None:
    job = write_job(tmp_path / "tight.yaml", name="tight", nodes=1, ranks_per_node=1, shm_size="40Mi",
                    command=_hog(8, 37))
    p = run_mnp(["launch", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr
    advice = [line for line in p.stderr.splitlines() if "advice" in line]
    assert len(advice) == 1, p.stderr
    assert re.fullmatch(r"mnp: advice: /dev/shm peaked at 3[789](\.\d)? MiB of 40 MiB \(the job's shm_size\) on "
                        r"node 0: the job nearly ran out; set shm_size: \d+Mi \(AWS Batch: "
                        r"linuxParameters.sharedMemorySize: \d+\)", advice[0]), advice
    job_id = p.stderr.split()[2]
    tel = _record(mnp_home, job_id)["info"]["telemetry"]
    assert tel["advice"] == advice[0].removeprefix("mnp: advice: ")
    status = run_mnp(["status", job_id], mnp_home).stdout.splitlines()
    assert [line for line in status if line.startswith("advice")] == [f"advice    {tel['advice']}"]


def test_telemetry_off_and_a_bad_interval(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "off.yaml", name="off", nodes=1, ranks_per_node=1, command=_hog(1, 1, 1.5))
    p = run_mnp(["launch", str(job)], mnp_home, env={"MNP_TELEMETRY_INTERVAL": "0"})
    assert p.returncode == 0, p.stderr
    rec = _record(mnp_home, p.stderr.split()[2])
    assert "telemetry" not in rec["info"]
    bad = run_mnp(["launch", str(job)], mnp_home, env={"MNP_TELEMETRY_INTERVAL": "0.5"})
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        "mnp: error: MNP_TELEMETRY_INTERVAL: '0.5' must be 0 (telemetry off) or at least 1 second"], bad.stderr


def test_status_of_a_running_job_shows_the_peaks_so_far(tmp_path: Path, mnp_home: Path,
                                                        no_leftovers: None) -> None:
    import os
    import subprocess
    import time

    job = write_job(tmp_path / "long.yaml", name="long", nodes=1, ranks_per_node=1, command=_hog(16, 4, 12))
    env = {**os.environ, "MNP_HOME": str(mnp_home)}
    env.pop("MNP_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-m", "mnp", "launch", str(job)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        job_id = proc.stderr.readline().split()[2]
        deadline = time.monotonic() + 60
        rec: dict[str, Any] = {}
        while time.monotonic() < deadline and proc.poll() is None:
            rec = _record(mnp_home, job_id)
            if "telemetry" in rec["info"]:
                break
            time.sleep(0.5)
        assert rec.get("state") == "RUNNING" and "telemetry" in rec["info"], rec
        t = rec["info"]["telemetry"]["nodes"]["0"]
        assert t["samples"] >= 1 and 16 * MiB <= t["peak_rss"] and 4 * MiB <= t["peak_shm"] < 8 * MiB
        lines = run_mnp(["status", job_id], mnp_home).stdout
        assert "  node 0: cpu peak " in lines
    finally:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
