"""How the ``mnp`` command shows a job's events: the job's id as soon as it has one (``mnp: job ID (NAME): ...``);
rank lines with their ``[node N rank R]`` prefix (``label``) and arrival time (``timestamp``), or into per-rank
files (:class:`RankFiles`, ``--output``/``--error``); notes as ``mnp: ...`` lines; bring-up progress (on a
terminal, one line updated in place; elsewhere at most once a second, and only when bring-up takes more than a
second)."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import IO

from mnp.coordinator.events import Event, JobCreated, Note, Progress, RankLines
from mnp.errors import UsageError

__all__ = ["Renderer", "RankFiles", "check_pattern", "expand_pattern"]

_ESCAPE = re.compile(r"%(.)", re.DOTALL)
_KNOWN = "jnrh%"


def check_pattern(pattern: str, option: str) -> str:
    """``pattern`` if its ``%`` escapes are known (``%j %n %r %h %%``); else UsageError naming ``option``."""
    bad = [m.group(0) for m in _ESCAPE.finditer(pattern) if m.group(1) not in _KNOWN]
    if bad or pattern.endswith("%") and not pattern.endswith("%%") or not pattern.strip():
        what = f"unknown escape {bad[0]!r}" if bad else "empty" if not pattern.strip() else "a lone '%' at the end"
        raise UsageError(f"{option}: {what} in {pattern!r} (use %j job, %n node, %r rank, %h host, %% for %)")
    return pattern


def expand_pattern(pattern: str, job_id: str, node: int, rank: int, host: str) -> str:
    """``pattern`` with ``%j`` (job id), ``%n`` (node), ``%r`` (rank; ``launcher`` for mpirun itself), ``%h``
    (host) and ``%%`` filled in."""
    values = {"j": job_id, "n": str(node), "r": str(rank) if rank >= 0 else "launcher", "h": host, "%": "%"}
    return _ESCAPE.sub(lambda m: values.get(m.group(1), m.group(0)), pattern)


class RankFiles:
    """Rank output into files named by patterns, one file per distinct name (ranks whose names are equal share
    it). ``host(node)`` names a node's host. A file that cannot be opened is reported once; its lines then go to
    the terminal."""

    def __init__(self, out: str | None, err: str | None, job_id: str, host: Callable[[int], str]) -> None:
        self.patterns = {"stdout": out, "stderr": err}
        self.job_id = job_id
        self.host = host
        self.files: dict[str, IO[str] | None] = {}
        self.problems: list[str] = []

    def wants(self, stream: str) -> bool:
        return self.patterns.get(stream) is not None

    def file_for(self, ev: RankLines) -> IO[str] | None:
        pattern = self.patterns[ev.stream]
        assert pattern is not None
        name = expand_pattern(pattern, self.job_id, ev.node, ev.rank, self.host(ev.node))
        if name not in self.files:
            try:
                self.files[name] = open(name, "w", encoding="utf-8", errors="replace")  # kept open till the end
            except OSError as e:
                self.files[name] = None
                self.problems.append(f"cannot write {name}: {e.strerror or e}; its lines go to the terminal")
        return self.files[name]

    def close(self) -> None:
        for f in self.files.values():
            if f is not None:
                f.close()
        self.files.clear()


class Renderer:
    """``quiet_stdout``: rank stdout goes to our stderr (``--json`` keeps stdout for the one JSON object).
    ``label``: the ``[node N rank R]`` prefix; ``timestamp``: the time each line arrived, before it. ``started``:
    what the line that announces the job's id says after it (None: no such line). ``tag``: put before every line
    (an array child's ``[3] ``)."""

    def __init__(self, quiet_stdout: bool = False, progress_after: float = 1.0, label: bool = True,
                 timestamp: bool = False, files: RankFiles | None = None, started: str | None = None,
                 tag: str = "") -> None:
        self.started = started
        self.tag = tag
        self.out = sys.stderr if quiet_stdout else sys.stdout
        self.after = progress_after
        self.label = label
        self.timestamp = timestamp
        self.files = files
        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.shown: dict[str, tuple[int, int]] = {}
        self.last_t = 0.0
        self.open_line = False

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, RankLines):
            self._lines(ev)
        elif isinstance(ev, Note):
            self.note(ev.kind, ev.text)
        elif isinstance(ev, Progress):
            self._progress(ev)
        elif isinstance(ev, JobCreated) and self.started is not None:
            self.note("info", f"job {ev.job_id} ({ev.name}): {self.started}")

    def note(self, kind: str, text: str) -> None:
        self._end_line()
        word = {"warning": "warning: ", "security": "refused: ", "advice": "advice: "}.get(kind, "")
        sys.stderr.write(f"mnp: {self.tag}{word}{text}\n")
        sys.stderr.flush()

    def prefix(self, ev: RankLines) -> str:
        stamp = f"{datetime.now():%H:%M:%S.%f}"[:-3] + " " if self.timestamp else ""
        if not self.label:
            return stamp + self.tag
        who = ev.process or (f"rank {ev.rank}" if ev.rank >= 0 else "launcher")
        return stamp + self.tag + f"[node {ev.node} {who}] "

    def _lines(self, ev: RankLines) -> None:
        target: IO[str] | None = None
        if self.files is not None and self.files.wants(ev.stream) and not ev.process:
            target = self.files.file_for(ev)
            while self.files.problems:
                self.note("warning", self.files.problems.pop(0))
        if target is None:
            self._end_line()
            target = self.out if ev.stream == "stdout" else sys.stderr
        prefix = self.prefix(ev)
        target.write("".join(prefix + ln + "\n" for ln in ev.lines))
        target.flush()

    def close(self) -> None:
        if self.files is not None:
            self.files.close()

    def _end_line(self) -> None:
        if self.open_line:
            sys.stderr.write("\n")
            self.open_line = False

    def _progress(self, ev: Progress) -> None:
        now = time.monotonic()
        state = (ev.done, ev.wanted)
        if ev.final:
            if ev.what in self.shown and self.shown[ev.what] != state:
                self._write(ev, now)
            self._end_line()
            return
        if now - self.t0 < self.after or self.shown.get(ev.what) == state and now - self.last_t < 5:
            return
        if not self.tty and now - self.last_t < 1:
            return
        self._write(ev, now)

    def _write(self, ev: Progress, now: float) -> None:
        self.shown[ev.what], self.last_t = (ev.done, ev.wanted), now
        more = f" ({ev.detail})" if ev.detail and ev.done < ev.wanted else ""
        line = f"mnp: {self.tag}{ev.what} {ev.done}/{ev.wanted}{more}"
        if self.tty:
            sys.stderr.write(f"\r{line}\033[K")
            self.open_line = True
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
