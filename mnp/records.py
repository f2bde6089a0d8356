"""Job records: one SQLite database and one directory per job under ``$MNP_HOME`` (default ``~/.mnp``).

The job state machine, written down once (the names and order of AWS Batch)::

    SUBMITTED --> PENDING --> RUNNABLE --> STARTING --> RUNNING --> SUCCEEDED
        |            |           |             |           |
        +------------+-----------+-------------+-----------+------> FAILED | CANCELLED

- SUBMITTED: the job file validated and the job has an id and a directory.
- PENDING: waiting for its dependencies (``depends_on``) to succeed; skipped by a job without any.
- RUNNABLE: nodes are being acquired (local namespaces created, SSH hosts dialled).
- STARTING: every node's agent has joined; ranks are being started.
- RUNNING: every rank has started.
- SUCCEEDED: every rank exited 0.  CANCELLED: stopped by the user (Ctrl-C, SIGTERM, ``mnp cancel``).
  FAILED: anything else; ``reason`` says what. A job whose coordinator died
  (killed, crashed) before finishing it is made FAILED by the next mnp command that opens the records.

Every transition is stored with its timestamp in ``transitions``; the current state is the ``jobs`` row's.

An array job (``--array N``) is a parent row and N child rows whose ids are ``<parent>:<index>`` (``parent`` and
``array_index`` columns); a child is a job like any other. Stuck-in-transit alerts are kept in the ``alerts``
column (a JSON list; shown as ``info.alerts``): a job with any is "stuck" (``mnp list --stuck``).
A job's directory holds its rank logs (``logs/node<N>.rank<R>.{out,err}``) and ``job.yaml`` as submitted.

Privacy, whatever the umask: ``$MNP_HOME`` is 0700, ``mnp.db`` (and SQLite's ``-wal``/``-shm`` beside it) 0600,
and ``jobs/`` and each job's directory 0700, so rank output (environment dumps, tokens printed by mistake) is
readable only by its owner even when the log files themselves are created with a loose mode.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnp.errors import UsageError
from mnp.home import home_dir
from mnp.pids import pid_alive

__all__ = ["STATES", "TERMINAL", "JobRecord", "Records", "mnp_home", "new_job_id", "state_times"]

STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, state TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
    num_nodes INTEGER NOT NULL, command TEXT NOT NULL, spec_path TEXT, dir TEXT NOT NULL,
    nodes TEXT NOT NULL DEFAULT '[]', exit_code INTEGER, reason TEXT, wall_s REAL, info TEXT NOT NULL DEFAULT '{}',
    owner_host TEXT, owner_pid INTEGER
);
CREATE TABLE IF NOT EXISTS transitions (
    job_id TEXT NOT NULL REFERENCES jobs(id), state TEXT NOT NULL, ts REAL NOT NULL, reason TEXT
);
CREATE INDEX IF NOT EXISTS transitions_job ON transitions(job_id);
"""
# columns added since the first schema (older databases get them on opening), in the order _record reads them
_ADDED = (("owner_host", "TEXT"), ("owner_pid", "INTEGER"), ("parent", "TEXT"), ("array_index", "INTEGER"),
          ("alerts", "TEXT NOT NULL DEFAULT '[]'"))
_COLUMNS = ("id, name, state, created, updated, num_nodes, command, spec_path, dir, nodes, exit_code, reason, wall_s, "
            "info, owner_host, owner_pid, parent, array_index, alerts")


EXIT_COORDINATOR_LOST = 255


def mnp_home() -> Path:
    return Path(home_dir())


def _private_dir(path: Path, tighten: bool = True) -> None:
    """``path`` made (parents too) and mode 0700. An existing directory is tightened only when ``tighten``: mnp
    never narrows a directory that may not be its own (``MNP_HOME=/tmp`` must not make /tmp 0700)."""
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        if not tighten:
            return
    os.chmod(path, 0o700)  # mkdir's mode passes through the umask, which may only narrow it; say it exactly


def _private_file(path: Path) -> None:
    """``path`` exists with mode 0600 (created so, never briefly readable by others; an older one narrowed)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    os.chmod(path, 0o600)


def new_job_id() -> str:
    return secrets.token_hex(5)


@dataclass(frozen=True)
class JobRecord:
    id: str
    name: str
    state: str
    created: float
    updated: float
    num_nodes: int
    command: str
    spec_path: str | None
    dir: str
    nodes: list[dict[str, Any]]
    exit_code: int | None
    reason: str | None
    wall_s: float | None
    info: dict[str, Any]
    transitions: list[tuple[str, float, str | None]]
    owner_host: str | None = None  # where the coordinator runs (``mnp cancel`` signals it there only)
    owner_pid: int | None = None
    parent: str | None = None  # an array child's parent job
    array_index: int | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)  # stuck-in-transit alerts (also info["alerts"])

    @property
    def final(self) -> bool:
        return self.state in TERMINAL

    def to_json(self) -> dict[str, Any]:
        """The record as ``mnp status --json`` prints it: ``job_id``, as every command's JSON names a job."""
        d = {("job_id" if k == "id" else k): getattr(self, k) for k in self.__dataclass_fields__}
        d["transitions"] = [{"state": s, "ts": ts, "reason": r} for s, ts, r in self.transitions]
        d["state_times"] = {k: round(v, 3) for k, v in state_times(self.transitions, self.updated).items()}
        d.pop("alerts")
        d["stuck"] = bool(self.alerts)
        return d


def state_times(transitions: list[tuple[str, float, str | None]], now: float | None = None) -> dict[str, float]:
    """Seconds spent in each state, from the transitions (a state entered twice, as RUNNABLE on a retry, counts
    both stays). The current state, if not final, counts up to ``now`` (default: the time now)."""
    out: dict[str, float] = {}
    for (state, ts, _), nxt in zip(transitions, [*transitions[1:], None]):
        if nxt is not None:
            end = nxt[1]
        elif state in TERMINAL:
            continue
        else:
            end = time.time() if now is None else max(now, ts)
        out[state] = out.get(state, 0.0) + max(0.0, end - ts)
    return out


class Records:
    def __init__(self, home: Path | None = None) -> None:
        self.home = home or mnp_home()
        db = self.home / "mnp.db"
        # A home mnp made (or one that already holds its records) is mnp's: 0700. Another existing directory
        # given as MNP_HOME keeps its mode; the records in it are private all the same.
        _private_dir(self.home, tighten=db.exists() or not self.home.exists() or not any(self.home.iterdir()))
        _private_file(db)  # SQLite gives its -wal and -shm files the database file's mode
        for extra in (self.home / "mnp.db-wal", self.home / "mnp.db-shm"):
            if extra.exists():  # left by an older mnp with a looser mode
                os.chmod(extra, 0o600)
        self.db = sqlite3.connect(db, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across crashes of mnp, cheap commits
        self.db.executescript(_SCHEMA)
        cols = {r[1] for r in self.db.execute("PRAGMA table_info(jobs)")}
        for col, kind in _ADDED:  # databases from before these columns
            if col not in cols:
                self.db.execute(f"ALTER TABLE jobs ADD COLUMN {col} {kind}")

    def close(self) -> None:
        self.db.close()

    def create(self, job_id: str, name: str, num_nodes: int, command: list[str], spec_path: str | None,
               parent: str | None = None, array_index: int | None = None) -> Path:
        d = self.home / "jobs" / job_id
        _private_dir(self.home / "jobs")
        _private_dir(d)  # what is written inside (logs, job.yaml) is private whatever mode it is created with
        (d / "logs").mkdir(mode=0o700, exist_ok=True)
        now = time.time()
        self.db.execute("BEGIN")
        self.db.execute("INSERT INTO jobs (id, name, state, created, updated, num_nodes, command, spec_path, dir, "
                        "owner_host, owner_pid, parent, array_index) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (job_id, name, "SUBMITTED", now, now, num_nodes, json.dumps(command), spec_path, str(d),
                         socket.gethostname(), os.getpid(), parent, array_index))
        self.db.execute("INSERT INTO transitions VALUES (?,?,?,?)", (job_id, "SUBMITTED", now, None))
        self.db.execute("COMMIT")
        return d

    def adopt(self, job_id: str) -> Path:
        """A job created by another process (an array's parent) is run by this one from now: it owns the record
        (``mnp cancel`` signals it, a crash of it is reaped). ``created`` becomes the time it was taken, no earlier
        than its process: ``mnp cancel`` signals only a process that is not younger than the job's record.
        Returns the job's directory."""
        self.db.execute("UPDATE jobs SET owner_host=?, owner_pid=?, created=MAX(created, ?) WHERE id=?",
                        (socket.gethostname(), os.getpid(), time.time(), job_id))
        return Path(self.get(job_id).dir)

    def take(self, job_id: str) -> bool:
        """:meth:`adopt`, unless the job ended meanwhile (``mnp cancel`` of an array child before it started):
        then False, and this process must not run it."""
        self.db.execute("BEGIN IMMEDIATE")
        cur = self.db.execute("UPDATE jobs SET owner_host=?, owner_pid=?, created=MAX(created, ?) WHERE id=? AND "
                              "state NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED')",
                              (socket.gethostname(), os.getpid(), time.time(), job_id))
        self.db.execute("COMMIT")
        return cur.rowcount == 1

    def cancel_unstarted(self, job_id: str, owner_pid: int, reason: str) -> bool:
        """CANCELLED now, if it still waits to be taken by its runner (its record still names ``owner_pid``, its
        parent's process, and it is SUBMITTED or PENDING); else False and nothing changes."""
        now = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        cur = self.db.execute("UPDATE jobs SET state='CANCELLED', updated=?, reason=? WHERE id=? AND owner_pid=? "
                              "AND state IN ('SUBMITTED', 'PENDING')", (now, reason, job_id, owner_pid))
        if cur.rowcount == 1:
            self.db.execute("INSERT INTO transitions VALUES (?,?,?,?)", (job_id, "CANCELLED", now, reason))
        self.db.execute("COMMIT")
        return cur.rowcount == 1

    def ended_children(self, parent: str) -> dict[int, str]:
        """An array's children whose records have ended: index -> state (cheap enough to poll)."""
        return {i: s for i, s in self.db.execute(
            "SELECT array_index, state FROM jobs WHERE parent=? AND state IN ('SUCCEEDED', 'FAILED', 'CANCELLED')",
            (parent,))}

    def alert(self, job_id: str, alert: dict[str, Any]) -> None:
        """Keep a stuck-in-transit alert with the job (the job is "stuck" from now on)."""
        self.db.execute("BEGIN IMMEDIATE")
        row = self.db.execute("SELECT alerts FROM jobs WHERE id=?", (job_id,)).fetchone()
        alerts = [*json.loads(row[0] if row and row[0] else "[]"), alert]
        self.db.execute("UPDATE jobs SET alerts=? WHERE id=?", (json.dumps(alerts), job_id))
        self.db.execute("COMMIT")

    def state_of(self, job_id: str) -> str | None:
        """A job's state by exact id (None: no such job); cheap enough to poll."""
        row = self.db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()
        return row[0] if row else None

    def children(self, parent: str) -> list[JobRecord]:
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE parent=? ORDER BY array_index",
                               (parent,)).fetchall()
        return [self._record(r) for r in rows]

    def transition(self, job_id: str, state: str, reason: str | None = None) -> None:
        assert state in STATES, state
        now = time.time()
        self.db.execute("BEGIN")
        self.db.execute("UPDATE jobs SET state=?, updated=?, reason=COALESCE(?, reason) WHERE id=?",
                        (state, now, reason, job_id))
        self.db.execute("INSERT INTO transitions VALUES (?,?,?,?)", (job_id, state, now, reason))
        self.db.execute("COMMIT")

    def update(self, job_id: str, **fields: Any) -> None:
        cols = []
        vals = []
        for k, v in fields.items():
            assert k in ("nodes", "exit_code", "reason", "wall_s", "info"), k
            cols.append(f"{k}=?")
            vals.append(json.dumps(v) if k in ("nodes", "info") else v)
        self.db.execute(f"UPDATE jobs SET {', '.join(cols)} WHERE id=?", (*vals, job_id))

    def reap_orphans(self) -> list[str]:
        """Jobs left unfinished by a coordinator on this host that no longer runs (killed, crashed): FAILED now,
        so no record says RUNNING forever. Returns their ids."""
        rows = self.db.execute("SELECT id, owner_pid FROM jobs WHERE state NOT IN ('SUCCEEDED', 'FAILED', "
                               "'CANCELLED') AND owner_host=?", (socket.gethostname(),)).fetchall()
        rows.sort(key=lambda r: ":" in r[0])  # an array's parent first: its children then say so
        gone = []
        for job_id, pid in rows:
            if pid is None or pid == os.getpid() or pid_alive(pid):
                continue
            self.update(job_id, exit_code=EXIT_COORDINATOR_LOST)
            self.transition(job_id, "FAILED", f"its coordinator (pid {pid}) ended without finishing the job")
            gone.append(job_id)
        return gone

    def get(self, ref: str) -> JobRecord:
        """A job by id, unique id prefix, or name (the newest job of that name); an array child as
        ``JOB:INDEX``, JOB any of those."""
        row = self.db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id=?", (ref,)).fetchone()
        if row is not None:
            return self._record(row)
        head, colon, index = ref.rpartition(":")
        if colon and index.isdigit() and head:
            parent = self.get(head)
            row = self.db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE parent=? AND array_index=?",
                                  (parent.id, int(index))).fetchone()
            if row is None:
                raise UsageError(f"job {ref!r}: job {parent.id} has no array child {index}")
            return self._record(row)
        like = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id LIKE ? ESCAPE '\\' AND parent IS NULL "
                               "ORDER BY created DESC", (like,)).fetchall()
        if not rows:
            rows = self.db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE name=? AND parent IS NULL "
                                   "ORDER BY created DESC LIMIT 1", (ref,)).fetchall()
        if not rows:
            raise UsageError(f"job {ref!r}: no such job in {self.home}")
        if len(rows) > 1:
            raise UsageError(f"job {ref!r}: ambiguous, matches {', '.join(r[0] for r in rows[:5])}")
        return self._record(rows[0])

    def list(self, limit: int = 50, stuck: bool = False) -> list[JobRecord]:
        """The newest jobs (an array's children are under their parent, not here); ``stuck``: only the jobs
        with a stuck-in-transit alert, children included."""
        where = "alerts != '[]'" if stuck else "parent IS NULL"
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE {where} ORDER BY created DESC LIMIT ?",
                               (limit,)).fetchall()
        return [self._record(r, with_transitions=False) for r in rows]

    def _record(self, row: tuple[Any, ...], with_transitions: bool = True) -> JobRecord:
        (jid, name, state, created, updated, num_nodes, command, spec_path, d, nodes, exit_code, reason, wall_s,
         info, owner_host, owner_pid, parent, array_index, alerts) = row
        trans = []
        if with_transitions:
            trans = [tuple(t) for t in self.db.execute(
                "SELECT state, ts, reason FROM transitions WHERE job_id=? ORDER BY rowid", (jid,))]
        info = json.loads(info)
        alerts = json.loads(alerts or "[]")
        if alerts:
            info["alerts"] = alerts
        return JobRecord(jid, name, state, created, updated, num_nodes, " ".join(json.loads(command)), spec_path,
                         d, json.loads(nodes), exit_code, reason, wall_s, info, trans,  # type: ignore[arg-type]
                         owner_host, owner_pid, parent, array_index, alerts)
