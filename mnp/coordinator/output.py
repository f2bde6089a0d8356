"""Rank output: kept whole in the job's log files as it arrives, and handed on line by line as events."""

from __future__ import annotations

import os
from pathlib import Path

from mnp.coordinator.events import EventSink, RankLines

__all__ = ["OutputSink", "log_name"]

Who = int | tuple[int, str]  # a rank, or (node, process name)


def log_name(node: int, rank: int, stream: str, process: str = "") -> str:
    who = process or (f"rank{rank}" if rank >= 0 else "launcher")  # rank -1: mpirun/mpiexec itself
    return f"node{node}.{who}.{'out' if stream == 'stdout' else 'err'}"


#: the longest line kept whole for the terminal (the log file gets every byte as it comes)
MAX_LINE = 64 << 10


class OutputSink:
    """Writes each chunk to its log file at once (unbuffered, 0600: ``mnp logs`` sees it while the job runs) and
    emits complete lines. ``echo=False``: keep the logs only (a caller that reads the output as data)."""

    def __init__(self, log_dir: Path, emit: EventSink, echo: bool = True) -> None:
        self.log_dir = log_dir
        self.emit = emit
        self.echo = echo
        self.files: dict[tuple[Who, str], int] = {}
        self.partial: dict[tuple[Who, str], bytes] = {}
        self.node_of: dict[Who, int] = {}

    def write(self, node: int, rank: int, stream: str, data: bytes, process: str = "") -> None:
        """``process``: a named process's output (its name), else rank ``rank``'s."""
        who: Who = (node, process) if process else rank
        key = (who, stream)
        self.node_of[who] = node
        fd = self.files.get(key)
        if fd is None:
            fd = self.files[key] = os.open(self.log_dir / log_name(node, rank, stream, process),
                                           os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        before = self.partial.get(key, b"")
        if b"\n" not in data:  # a line still growing: no re-split of what came before
            rest, lines = before + data, []
        else:
            first, *lines, rest = data.split(b"\n")
            lines.insert(0, before + first)
        while len(rest) >= MAX_LINE:  # a line without end (progress bars, binary): shown in pieces, never held whole
            lines.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self.partial[key] = rest
        if lines:
            self._emit(node, who, stream, lines)

    def _emit(self, node: int, who: Who, stream: str, lines: list[bytes]) -> None:
        if self.echo:
            rank, process = (-1, who[1]) if isinstance(who, tuple) else (who, "")
            self.emit(RankLines(node, rank, stream, [ln.decode(errors="replace") for ln in lines], process))

    def flush_rank(self, rank: int) -> None:
        """A rank ended: hand on what it left without a final newline."""
        self._flush(rank)

    def flush_process(self, node: int, name: str) -> None:
        self._flush((node, name))

    def _flush(self, who: Who) -> None:
        for stream in ("stdout", "stderr"):
            rest = self.partial.pop((who, stream), b"")
            if rest:
                self._emit(self.node_of.get(who, -1), who, stream, [rest])

    def close(self) -> None:
        for who in list(self.node_of):
            self._flush(who)
        for fd in self.files.values():
            os.close(fd)
        self.files.clear()
