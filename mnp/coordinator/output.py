"""Rank output: kept whole in the job's log files as it arrives, and handed on line by line as events."""

from __future__ import annotations

import os
from pathlib import Path

from mnp.coordinator.events import EventSink, RankLines

__all__ = ["OutputSink", "log_name"]


def log_name(node: int, rank: int, stream: str) -> str:
    who = f"rank{rank}" if rank >= 0 else "launcher"  # rank -1: mpirun/mpiexec itself
    return f"node{node}.{who}.{'out' if stream == 'stdout' else 'err'}"


class OutputSink:
    """Writes each chunk to its log file at once (unbuffered, 0600: ``mnp logs`` sees it while the job runs) and
    emits complete lines. ``echo=False``: keep the logs only (a caller that reads the output as data)."""

    def __init__(self, log_dir: Path, emit: EventSink, echo: bool = True) -> None:
        self.log_dir = log_dir
        self.emit = emit
        self.echo = echo
        self.files: dict[tuple[int, str], int] = {}
        self.partial: dict[tuple[int, str], bytes] = {}
        self.node_of: dict[int, int] = {}

    def write(self, node: int, rank: int, stream: str, data: bytes) -> None:
        key = (rank, stream)
        self.node_of[rank] = node
        fd = self.files.get(key)
        if fd is None:
            fd = self.files[key] = os.open(self.log_dir / log_name(node, rank, stream),
                                           os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        buf = self.partial.get(key, b"") + data
        *lines, rest = buf.split(b"\n")
        self.partial[key] = rest
        if lines:
            self._emit(node, rank, stream, lines)

    def _emit(self, node: int, rank: int, stream: str, lines: list[bytes]) -> None:
        if self.echo:
            self.emit(RankLines(node, rank, stream, [ln.decode(errors="replace") for ln in lines]))

    def flush_rank(self, rank: int) -> None:
        """A rank ended: hand on what it left without a final newline."""
        for stream in ("stdout", "stderr"):
            rest = self.partial.pop((rank, stream), b"")
            if rest:
                self._emit(self.node_of.get(rank, -1), rank, stream, [rest])

    def close(self) -> None:
        for rank in list(self.node_of):
            self.flush_rank(rank)
        for fd in self.files.values():
            os.close(fd)
        self.files.clear()
