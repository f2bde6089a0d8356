"""Job records in SQLite on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnp.errors import UsageError
from mnp.records import Records


def test_lifecycle_and_lookup(tmp_path: Path) -> None:
    r = Records(tmp_path)
    d = r.create("abc1234567", "hello", 4, ["python", "x.py"], "job.yaml")
    assert (d / "logs").is_dir()
    for s in ("RUNNABLE", "STARTING", "RUNNING"):
        r.transition("abc1234567", s)
    r.update("abc1234567", nodes=[{"index": 0}], exit_code=3, wall_s=1.5, info={"transport": {"x": 1}})
    r.transition("abc1234567", "FAILED", "node 1 rank 3 exited with code 3")
    r.close()
    again = Records(tmp_path)  # it is on disk
    j = again.get("abc1")
    assert j.state == "FAILED" and j.exit_code == 3 and j.reason.startswith("node 1 rank 3")
    assert [t[0] for t in j.transitions] == ["SUBMITTED", "RUNNABLE", "STARTING", "RUNNING", "FAILED"]
    assert [t[1] for t in j.transitions] == sorted(t[1] for t in j.transitions)
    assert j.nodes == [{"index": 0}] and j.info == {"transport": {"x": 1}} and j.command == "python x.py"
    assert again.get("hello").id == "abc1234567"
    again.create("abd0000000", "other", 1, ["true"], None)
    with pytest.raises(UsageError, match="ambiguous"):
        again.get("ab")
    with pytest.raises(UsageError, match="no such job"):
        again.get("zzz")
    assert [j.id for j in again.list()] == ["abd0000000", "abc1234567"]
    with pytest.raises(AssertionError):
        again.transition("abc1234567", "PAUSED")
