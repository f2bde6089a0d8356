"""`pip install mnp[bench]` as a user does it: the wheel built from this tree, installed with its bench extra into
a fresh virtual environment, used from a directory outside the repository.

Asserted: the wheel holds the bench package with its job files and C sources; `mnp bench osu latency --help` and
`python -m bench.osu --help` work there; loading the mnp command (`mnp bench --help` included) imports none of
numba, numpy, matplotlib; a tiny real `mnp bench osu latency` and `mnp bench fabric --report` run there, with
bench imported from the environment (not this checkout). Packages come from pip's cache where it has them, else
from the package index; without either, the test is skipped with pip's reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.namespaces


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_wheel_with_bench_extra_in_a_fresh_venv(tmp_path: Path, no_leftovers: None) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MNP_DEBUG")}
    env["MNP_HOME"] = str(tmp_path / "mnp-home")
    wheels = tmp_path / "wheels"
    p = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)], tmp_path, env)
    if p.returncode != 0 and ("Could not find a version" in p.stderr or "connection" in p.stderr.lower()):
        pytest.skip(f"no build requirements to be had: {p.stderr.strip().splitlines()[-1]}")
    assert p.returncode == 0, p.stderr
    (wheel,) = wheels.glob("mnp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"bench/__init__.py", "bench/osu/__main__.py", "bench/osu-latency.yaml", "bench/md-shm.yaml",
            "bench/c/osu_ref.c", "mnp/cli/bench.py"} <= names
    base = Path(getattr(sys, "_base_executable", sys.executable))
    venv = tmp_path / "venv"
    assert _run([str(base), "-m", "venv", str(venv)], tmp_path, env).returncode == 0
    py, mnp = venv / "bin" / "python", venv / "bin" / "mnp"
    p = _run([str(py), "-m", "pip", "install", "-q", f"{wheel}[bench]"], tmp_path, env, timeout=1200)
    if p.returncode != 0 and ("Could not find a version" in p.stderr or "connection" in p.stderr.lower()):
        pytest.skip(f"the bench extra's packages are not to be had: {p.stderr.strip().splitlines()[-1]}")
    assert p.returncode == 0, p.stderr
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    p = _run([str(mnp), "bench", "osu", "latency", "--help"], outside, env)
    assert p.returncode == 0 and "OMB 7.4" in p.stdout, p.stderr
    p = _run([str(py), "-m", "bench.osu", "--help"], outside, env)
    assert p.returncode == 0 and "latency" in p.stdout, p.stderr
    p = _run([str(py), "-c", "import bench, sys; from click.testing import CliRunner; from mnp.cli.main import cli; "
              "r = CliRunner().invoke(cli, ['bench', 'fabric', '--help']); "
              "print(r.exit_code, bench.__file__, [m for m in ('numba', 'numpy', 'matplotlib') if m in sys.modules])"],
             outside, env)
    code, where, heavy = p.stdout.split(" ", 2)
    assert code == "0" and where.startswith(str(venv)) and heavy.strip() == "[]", p.stdout + p.stderr

    p = _run([str(mnp), "bench", "osu", "latency", "--transport", "shm", "-m", "8", "-i", "50", "--reps", "1",
              "--json"], outside, env)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert [row["size"] for row in r["rows"]] == [1, 2, 4, 8] and r["path"] == "numba"
    assert r["env"]["libmpi"].startswith(str(venv))  # the environment's own MPICH, through its own bench

    report = outside / "report"
    p = _run([str(mnp), "bench", "fabric", "--paths", "numba", "--max-size", "8", "-i", "20", "--reps", "1",
              "--md-ranks", "1,2", "--md-cells", "6", "--md-steps", "10", "--report", str(report)], outside, env)
    assert p.returncode == 0, p.stderr
    assert "latency tcp/shm, numba" in p.stdout
    assert all((report / f).stat().st_size > 1000 for f in ("report.html", "latency.png", "bandwidth.png", "md.png"))
