"""Running a benchmark job through `mnp launch --json`, as a user would, and reading its record back."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).absolute().parents[1]


def launch_job(job: Path, extra: list[str], tmp: Path, parse: Callable[[str], list[dict[str, Any]]],
               label: str) -> dict[str, Any]:
    """Run ``job`` with ``extra`` appended to its command; its one ``label`` record (found by ``parse`` in the
    rank output) plus the job's id. Exits with a message naming the job when the launch or the record fails."""
    spec = yaml.safe_load(job.read_text())
    cmd = spec["command"]
    spec["command"] = [*(shlex.split(cmd) if isinstance(cmd, str) else cmd), *extra]
    tmp_job = tmp / job.name
    tmp_job.write_text(yaml.safe_dump(spec, sort_keys=False))
    p = subprocess.run([sys.executable, "-m", "mnp", "launch", "--json", str(tmp_job)], check=False,
                       capture_output=True, text=True, cwd=ROOT, env=os.environ.copy())
    records = parse(p.stderr)  # with --json, rank output goes to stderr
    if p.returncode != 0 or len(records) != 1:
        tail = "\n".join(p.stderr.splitlines()[-5:])
        raise SystemExit(f"compare: {job.name} {' '.join(extra)}: mnp launch exit {p.returncode}, "
                         f"{len(records)} {label} record(s)\n{tail}")
    return {**records[0], "job_id": json.loads(p.stdout)["job_id"]}
