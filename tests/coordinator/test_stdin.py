"""mnp's standard input reaches the ranks that read it, as mpirun (rank 0) and srun (all, none, one) do, on real
local nodes; a rank that reads slowly does not stall the job."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from mnp.coordinator import LaunchRequest, launch
from mnp.coordinator.events import Event, RankLines
from mnp.spec import spec_from_dict

pytestmark = pytest.mark.namespaces

READ = ("import hashlib, json, os, sys, time\n"
        "if os.environ['MNP_RANK'] == '0': time.sleep(0.5)  # a slow reader: the agent must buffer, not block\n"
        "d = sys.stdin.buffer.read()\n"
        "print('STDIN ' + json.dumps({'rank': int(os.environ['MNP_RANK']), 'n': len(d),\n"
        "                           'sha': hashlib.sha256(d).hexdigest()}), flush=True)\n")


def _run(tmp_path: Path, mnp_home: Path, which: str, data: bytes) -> dict[int, dict[str, object]]:
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    lines: list[str] = []

    def keep(ev: Event) -> None:
        if isinstance(ev, RankLines):
            lines.extend(ev.lines)

    spec = spec_from_dict({"name": "stdin", "nodes": 2, "ranks_per_node": 2,
                           "command": [sys.executable, "-c", READ]})
    fd = os.open(src, os.O_RDONLY)
    try:
        result = launch(LaunchRequest(spec=spec, events=keep, home=mnp_home, stdin=which, stdin_fd=fd))
    finally:
        os.close(fd)
    assert result.state == "SUCCEEDED", result.reason
    recs = [json.loads(ln.split("STDIN ", 1)[1]) for ln in lines if ln.startswith("STDIN ")]
    return {r["rank"]: r for r in recs}


@pytest.mark.parametrize(("which", "readers"), [("0", {0}), ("all", {0, 1, 2, 3}), ("none", set()), ("3", {3})])
def test_stdin_goes_to_the_ranks_asked(tmp_path: Path, mnp_home: Path, no_leftovers: None, which: str,
                                       readers: set[int]) -> None:
    import hashlib

    data = os.urandom(300_000)  # more than a pipe holds: the agent must queue it
    got = _run(tmp_path, mnp_home, which, data)
    assert sorted(got) == [0, 1, 2, 3]
    for rank, rec in got.items():
        if rank in readers:
            assert rec["n"] == len(data) and rec["sha"] == hashlib.sha256(data).hexdigest(), rank
        else:
            assert rec["n"] == 0, rank  # /dev/null: end of file at once


def test_the_loop_waits_while_ranks_run_with_stdin_at_its_end(tmp_path: Path, mnp_home: Path, no_leftovers: None,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """stdin at its end from the start (/dev/null, a finished pipe: most jobs): the coordinator's loop still waits
    on the socket (it spun, a whole core while the ranks ran). Counted, not timed: a spinning loop reads the socket
    thousands of times in a second, however busy the machine; a waiting one about ten times."""
    from mnp.control.channel import CoordinatorChannel

    calls = {"recv": 0}
    real = CoordinatorChannel.recv

    def counted(self: CoordinatorChannel, timeout_ms: int):  # type: ignore[no-untyped-def]
        calls["recv"] += 1
        return real(self, timeout_ms)

    monkeypatch.setattr(CoordinatorChannel, "recv", counted)
    spec = spec_from_dict({"name": "stdin-eof", "nodes": 1, "ranks_per_node": 1, "command": ["sleep", "2"]})
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        result = launch(LaunchRequest(spec=spec, home=mnp_home, stdin="0", stdin_fd=fd))
    finally:
        os.close(fd)
    assert result.state == "SUCCEEDED", result.reason
    assert calls["recv"] < 300, f"the loop read the socket {calls['recv']} times in a 2 s job: it spins"
