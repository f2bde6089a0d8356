"""Reading OMB text the way tools that consume OMB output do: ``#`` lines and empty lines are comments, every
other line is a size (an integer) followed by its figures (numbers); anything else is not OMB output."""

from __future__ import annotations

__all__ = ["OmbTable", "parse_omb"]


class OmbTable:
    """The comment lines before the first row (OMB's header), the rows, and the comment lines after them."""

    def __init__(self) -> None:
        self.header: list[str] = []
        self.rows: list[tuple[int, list[float]]] = []
        self.trailer: list[str] = []


def parse_omb(lines: list[str]) -> OmbTable:
    t = OmbTable()
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            (t.trailer if t.rows else t.header).append(line)
            continue
        if t.trailer:
            raise ValueError(f"line {n}: a row after the comments that follow the table: {line!r}")
        words = line.split()
        try:
            t.rows.append((int(words[0]), [float(w) for w in words[1:]]))
        except ValueError:
            raise ValueError(f"line {n}: not an OMB row (size, then numbers): {line!r}") from None
    return t
