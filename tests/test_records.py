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


def test_older_database_gains_owner_columns(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "mnp.db")
    db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, name TEXT NOT NULL, state TEXT NOT NULL, created REAL NOT NULL,"
               " updated REAL NOT NULL, num_nodes INTEGER NOT NULL, command TEXT NOT NULL, spec_path TEXT,"
               " dir TEXT NOT NULL, nodes TEXT NOT NULL DEFAULT '[]', exit_code INTEGER, reason TEXT, wall_s REAL,"
               " info TEXT NOT NULL DEFAULT '{}')")
    db.execute("INSERT INTO jobs (id, name, state, created, updated, num_nodes, command, dir) "
               "VALUES ('old0000000', 'old', 'RUNNING', 1, 1, 1, '[\"x\"]', '/tmp')")
    db.commit()
    db.close()
    r = Records(tmp_path)
    assert r.get("old").state == "RUNNING"
    assert r.reap_orphans() == []  # no owner recorded: nothing to judge
    r.create("new0000000", "new", 1, ["y"], None)
    assert r.reap_orphans() == []  # its owner (this process) is alive
    r.db.execute("UPDATE jobs SET owner_pid=? WHERE id='new0000000'", (2**22 + 12345,))  # a pid that is gone
    assert r.reap_orphans() == ["new0000000"]
    assert r.get("new").state == "FAILED" and r.get("new").exit_code == 255
