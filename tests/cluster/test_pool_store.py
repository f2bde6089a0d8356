"""The pool file (``$MNP_HOME/pool.json``): private, checked, and every fault in it is one line naming it, exit 2
(through the real CLI); no pool agent is needed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_mnp

pytestmark = pytest.mark.noroot

KEY = "x" * 40


def _write(home: Path, data: object, mode: int = 0o600) -> Path:
    path = home / "pool.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    os.chmod(path, mode)
    return path


def _good(**host: object) -> dict[str, object]:
    return {"public": KEY, "secret": KEY,
            "hosts": {"h1": {"address": "127.0.0.1", "port": 9, "public": KEY, **host}}}


@pytest.mark.parametrize("data, says", [
    ("{not json", "not a pool file"),
    ([1, 2], "not a pool file"),
    ({"public": KEY}, "not a pool file"),
    (_good(public="short"), "host 'h1': not a pool host entry"),
    (_good(port="abc"), "host 'h1': not a pool host entry"),
    (_good(port=70000), "host 'h1': not a pool host entry"),
    ({"public": KEY, "secret": KEY, "hosts": {"h1": "10.0.0.1"}}, "host 'h1': not a pool host entry"),
    ({"public": "short", "secret": KEY, "hosts": {}}, "client key pair"),
])
@pytest.mark.parametrize("command", [["pool", "status"], ["pool", "stop"], ["run", "--hosts", "h1", "--via", "pool",
                                                                           "true"]])
def test_a_damaged_pool_file_is_one_line(mnp_home: Path, data: object, says: str, command: list[str]) -> None:
    path = _write(mnp_home, data)
    p = run_mnp(command, mnp_home, timeout=30)
    assert p.returncode == 2, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith(f"mnp: error: {path}: ") and says in last, p.stderr
    assert "Traceback" not in p.stderr


def test_a_pool_file_others_can_read_is_refused(mnp_home: Path) -> None:
    path = _write(mnp_home, _good(), mode=0o644)
    p = run_mnp(["pool", "status"], mnp_home, timeout=30)
    assert p.returncode == 2 and f"{path}: readable by others or not yours (mode 644)" in p.stderr, p.stderr
    os.chmod(path, 0o600)
    p = run_mnp(["pool", "status", "--json"], mnp_home, timeout=30)  # h1's port 9: nothing answers, in time
    assert p.returncode == 1 and json.loads(p.stdout)["hosts"][0]["state"] == "not answering", p.stdout


def test_no_pool_and_an_unwritable_home(mnp_home: Path, tmp_path: Path) -> None:
    p = run_mnp(["pool", "status"], mnp_home, timeout=30)
    assert p.returncode == 0 and "no pool" in p.stdout
    p = run_mnp(["run", "--hosts", "h1,h2", "--via", "pool", "true"], mnp_home, timeout=30)
    assert p.returncode == 2 and "host h1: no pool agent started for it (nor for 1 more)" in p.stderr, p.stderr
    afile = tmp_path / "afile"
    afile.write_text("")
    p = run_mnp(["pool", "stop"], afile / "home", timeout=30)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr


def test_dry_run_names_the_pool(mnp_home: Path, tmp_path: Path) -> None:
    job = tmp_path / "j.yaml"
    job.write_text("name: t\ncommand: [hostname]\n")
    p = run_mnp(["launch", "--dry-run", "--hosts", "h1,h2", "--via", "pool", str(job)], mnp_home, timeout=30)
    assert p.returncode == 0 and "nodes      2 (pool), main node 0" in p.stdout, p.stdout + p.stderr
    assert not (mnp_home / "pool.json").exists()  # a dry run asks no pool agent anything
