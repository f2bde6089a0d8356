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
    assert j.state == "FAILED" and j.exit_code == 3 and (j.reason or "").startswith("node 1 rank 3")
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


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_home_database_and_job_directory_are_private(umask: int) -> None:
    """Whatever the umask: home 0700, mnp.db (and its WAL files) 0600, the job directory 0700 -- so a log file
    created with a loose mode inside it is still unreadable by another user (checked as user nobody)."""
    import os
    import shutil
    import stat
    import subprocess
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="mnp-perm-", dir="/tmp"))  # not under pytest's 0700 tmp: others can look
    old = os.umask(umask)
    try:
        os.chmod(base, 0o755)
        home = base / "home"
        r = Records(home)
        d = r.create("perm000001", "perm", 1, ["true"], None)
        r.transition("perm000001", "RUNNABLE")  # the WAL files exist now
        log = d / "logs" / "node0.rank0.out"
        with open(log, "ab") as f:  # as the coordinator's OutputSink opens rank logs: mode 0666 & ~umask
            f.write(b"SECRET=hunter2\n")

        def mode(p: Path) -> int:
            return stat.S_IMODE(p.stat().st_mode)

        assert mode(home) == 0o700
        assert mode(home / "mnp.db") == 0o600
        assert {mode(p) for p in home.glob("mnp.db-*")} <= {0o600} and (home / "mnp.db-wal").exists()
        assert mode(home / "jobs") == 0o700 and mode(d) == 0o700
        assert mode(d / "logs") & 0o077 == 0
        assert log.read_bytes() == b"SECRET=hunter2\n"
        if os.geteuid() == 0:  # the real question: can another user read it?
            for p in (log, home / "mnp.db"):
                got = subprocess.run(["cat", str(p)], check=False, user=65534, group=65534, capture_output=True)
                assert got.returncode != 0 and b"Permission denied" in got.stderr, (p, got)
        r.close()
    finally:
        os.umask(old)
        shutil.rmtree(base)


def test_existing_loose_home_is_tightened_but_a_foreign_directory_is_not(tmp_path: Path) -> None:
    import os
    import stat

    old_home = tmp_path / "old"
    Records(old_home).close()
    os.chmod(old_home, 0o755)  # as an older mnp left it
    os.chmod(old_home / "mnp.db", 0o644)
    Records(old_home).close()
    assert stat.S_IMODE(old_home.stat().st_mode) == 0o700
    assert stat.S_IMODE((old_home / "mnp.db").stat().st_mode) == 0o600

    shared = tmp_path / "shared"  # MNP_HOME pointed at a directory with other things in it: left as it is
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    (shared / "someone-elses-file").write_text("x")
    r = Records(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    assert stat.S_IMODE((shared / "mnp.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(r.create("own0000001", "own", 1, ["true"], None).stat().st_mode) == 0o700
    assert stat.S_IMODE((shared / "jobs").stat().st_mode) == 0o700
    r.close()


def test_json_says_job_id_and_the_owner(tmp_path: Path) -> None:
    """`mnp status --json` names the job `job_id`, as every command's JSON does; the owner is what `mnp cancel`
    signals."""
    import os
    import socket

    r = Records(tmp_path)
    r.create("c000000001", "own", 2, ["true"], None)
    j = r.get("own")
    assert j.owner_pid == os.getpid() and j.owner_host == socket.gethostname() and not j.final
    d = j.to_json()
    assert d["job_id"] == "c000000001" and "id" not in d
    assert d["owner_pid"] == os.getpid() and d["transitions"][0]["state"] == "SUBMITTED"
    r.transition("c000000001", "CANCELLED", "interrupted by SIGTERM")
    assert r.get("own").final and [x.id for x in r.list()] == ["c000000001"]
