"""Shared fixtures: a private MNP_HOME, a runner for the real `mnp` command, and a leftover check."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
JOBS = ROOT / "tests" / "jobs"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "namespaces: needs root and Linux namespaces (isolated local nodes)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from mnp.cluster.local import namespaces_available

    if namespaces_available():
        return
    skip = pytest.mark.skip(reason="isolated local nodes need root, ip and unshare")
    for item in items:
        if "namespaces" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def mnp_home(tmp_path: Path) -> Path:
    home = tmp_path / "mnp-home"
    home.mkdir()
    return home


def run_mnp(args: list[str], home: Path, timeout: float = 180, env: dict[str, str] | None = None,
            cwd: Path = ROOT, **kw: object) -> subprocess.CompletedProcess[str]:
    """Run the real `mnp` command (as users do) and capture its output."""
    full_env = {**os.environ, "MNP_HOME": str(home), **(env or {})}
    full_env.pop("MNP_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "mnp", *args], capture_output=True, text=True, timeout=timeout,
                          env=full_env, cwd=cwd, **kw)  # type: ignore[call-overload]


def write_job(path: Path, **fields: object) -> Path:
    path.write_text(yaml.safe_dump(fields, sort_keys=False))
    return path


def leftovers() -> list[str]:
    """Everything a local cluster can leave behind: namespaces, links, run files, processes."""
    found = []
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {line.split()[0]}" for line in ns.splitlines() if line.startswith("mnp-")]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(("mnpb-", "mv")):
            found.append(f"link {name}")
    run_dir = Path(os.environ.get("MNP_RUN_DIR", "/run/mnp"))
    if run_dir.exists():
        found += [f"run file {p}" for p in run_dir.iterdir() if p.name != "subnet.lock"]  # the lock stays
    tmp = Path(tempfile.gettempdir())  # local jobs' private roots and agents' private directories
    found += [f"dir {p}" for p in tmp.glob("mnp-*") if p.is_dir() and re.fullmatch(r"mnp-([0-9a-f]{6}|agent-.*)",
                                                                                      p.name)]
    me = os.getpid()
    for p in psutil.process_iter(["pid", "cmdline", "name"]):
        cmd = " ".join(p.info["cmdline"] or [])
        name = p.info["name"] or ""
        if p.info["pid"] != me and ("mnp agent" in cmd or "mnp.node.agent" in cmd or "mnp.cluster.srun_task" in cmd
                                    or str(JOBS) in cmd or
                                    name.startswith(("mnp-agent", "mnp-keep", "mnp-pool"))):
            found.append(f"process {p.info['pid']} ({name}): {cmd[:80]}")
    return found


@pytest.fixture
def no_leftovers() -> Iterator[None]:
    """Fails the test if it leaves namespaces, links, processes or /dev/shm files behind."""
    shm_before = set(os.listdir("/dev/shm"))
    yield
    left = leftovers()
    new_shm = sorted(set(os.listdir("/dev/shm")) - shm_before)
    assert not left, f"left behind: {left}"
    assert not new_shm, f"left in /dev/shm: {new_shm}"


RANK0 = "[node 0 rank 0] "


def launch_module(tmp_path: Path, home: Path, module: str, name: str, nodes: int, rpn: int, args: list[str],
                  transport: str = "tcp", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`mnp launch` of ``python -m module args`` on ``nodes`` x ``rpn`` local nodes (the benchmark jobs)."""
    job = write_job(tmp_path / f"{name}.yaml", name=name, nodes=nodes, ranks_per_node=rpn,
                    command=[sys.executable, "-m", module, *args], env=env or {}, mpi="mpich", transport=transport,
                    timeout=120)
    return run_mnp(["launch", str(job)], home)


def rank0_record(p: subprocess.CompletedProcess[str], marker: str) -> tuple[list[str], dict[str, object]]:
    """Rank 0's lines without their prefix (no other rank may print) and its one ``marker`` JSON record."""
    import json

    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines and all(line.startswith(RANK0) for line in lines), p.stdout
    recs = [json.loads(line.split(f"{marker} ", 1)[1]) for line in lines if f"{marker} " in line]
    assert len(recs) == 1
    return [line[len(RANK0):] for line in lines], recs[0]
