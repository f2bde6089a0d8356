"""Rank output: live, line-by-line, prefixed ``[node N rank R]``, and kept whole in the job's log files."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO

__all__ = ["OutputSink", "Progress", "log_name"]


def log_name(node: int, rank: int, stream: str) -> str:
    who = f"rank{rank}" if rank >= 0 else "launcher"  # rank -1: mpirun/mpiexec itself
    return f"node{node}.{who}.{'out' if stream == 'stdout' else 'err'}"


class OutputSink:
    """Writes each chunk to its log file at once and prints complete lines with their prefix.

    ``quiet_stdout``: send rank stdout to our stderr (``--json`` keeps stdout for the one JSON object).
    ``echo=False``: keep the logs only, show nothing (a caller that reads the output as data: ``mnp doctor``).
    """

    def __init__(self, log_dir: Path, quiet_stdout: bool = False, echo: bool = True) -> None:
        self.echo = echo
        self.log_dir = log_dir
        self.files: dict[tuple[int, str], IO[bytes]] = {}
        self.partial: dict[tuple[int, str], bytes] = {}
        self.node_of: dict[int, int] = {}
        self.out = sys.stderr if quiet_stdout else sys.stdout

    def write(self, node: int, rank: int, stream: str, data: bytes) -> None:
        key = (rank, stream)
        self.node_of[rank] = node
        f = self.files.get(key)
        if f is None:
            f = self.files[key] = open(self.log_dir / log_name(node, rank, stream), "ab")
        f.write(data)
        buf = self.partial.get(key, b"") + data
        *lines, rest = buf.split(b"\n")
        self.partial[key] = rest
        if lines:
            self._emit(node, rank, stream, lines)

    def _emit(self, node: int, rank: int, stream: str, lines: list[bytes]) -> None:
        if not self.echo:
            return
        target = self.out if stream == "stdout" else sys.stderr
        prefix = f"[node {node} rank {rank}] " if rank >= 0 else f"[node {node} launcher] "
        target.write("".join(prefix + ln.decode(errors="replace") + "\n" for ln in lines))
        target.flush()

    def flush_rank(self, rank: int) -> None:
        """A rank ended: print what it left without a final newline."""
        for stream in ("stdout", "stderr"):
            rest = self.partial.pop((rank, stream), b"")
            if rest:
                self._emit(self.node_of.get(rank, -1), rank, stream, [rest])
            f = self.files.get((rank, stream))
            if f:
                f.flush()

    def close(self) -> None:
        for rank in list(self.node_of):
            self.flush_rank(rank)
        for f in self.files.values():
            f.close()
        self.files.clear()


class Progress:
    """``nodes up 3/4`` on stderr, shown only when bring-up takes longer than ``after`` seconds."""

    def __init__(self, what: str, after: float = 1.0) -> None:
        self.what = what
        self.after = after
        self.t0 = time.monotonic()
        self.shown = False
        self.last = (-1, -1)
        self.last_t = 0.0
        self.tty = sys.stderr.isatty()

    def update(self, done: int, wanted: int, force: bool = False, detail: str = "") -> None:
        now = time.monotonic()
        if not force and now - self.t0 < self.after:
            return
        if (done, wanted) == self.last and now - self.last_t < 5:
            return
        if not self.tty and not force and now - self.last_t < 1 and done < wanted:
            return
        self.last, self.last_t, self.shown = (done, wanted), now, True
        end = "" if self.tty and done < wanted else "\n"
        start = "\r" if self.tty else ""
        more = f" ({detail})" if detail and done < wanted else ""
        sys.stderr.write(f"{start}mnp: {self.what} {done}/{wanted}{more}{end}")
        sys.stderr.flush()

    def done(self, done: int, wanted: int) -> None:
        if self.shown and self.last != (done, wanted):
            self.update(done, wanted, force=True)
        elif self.shown and self.tty and self.last[0] < wanted:
            sys.stderr.write("\n")
