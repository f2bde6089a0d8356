"""The coordinator's rank output: lines split however the bytes arrive, a line without end never held whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnp.coordinator.output import MAX_LINE, OutputSink

pytestmark = pytest.mark.noroot


def _sink(tmp_path: Path) -> tuple[OutputSink, list[str]]:
    shown: list[str] = []
    return OutputSink(tmp_path, lambda ev: shown.extend(ev.lines), echo=True), shown


def test_lines_split_across_chunks(tmp_path: Path) -> None:
    sink, shown = _sink(tmp_path)
    for chunk in (b"al", b"pha\nbe", b"ta\n\ngam", b"ma"):
        sink.write(0, 1, "stdout", chunk)
    assert shown == ["alpha", "beta", ""]
    sink.flush_rank(1)
    assert shown == ["alpha", "beta", "", "gamma"]
    sink.close()
    assert (tmp_path / "node0.rank1.out").read_bytes() == b"alpha\nbeta\n\ngamma"


def test_a_line_without_end_is_shown_in_pieces_and_kept_whole_in_the_log(tmp_path: Path) -> None:
    sink, shown = _sink(tmp_path)
    chunk = b"x" * 65536
    for _ in range(300):  # 19 MiB without a newline: before, every chunk re-joined the whole line held so far
        sink.write(0, 0, "stdout", chunk)
        assert all(len(p) < MAX_LINE for p in sink.partial.values())
    sink.write(0, 0, "stdout", b"end\n")
    sink.close()
    assert all(len(s) == MAX_LINE for s in shown[:-1]) and shown[-1].endswith("end")
    assert "".join(shown) == "x" * (300 * 65536) + "end"
    assert (tmp_path / "node0.rank0.out").stat().st_size == 300 * 65536 + 4
