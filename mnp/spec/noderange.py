"""AWS Batch node-range syntax (``targetNodes``): ``"0:"``, ``":2"``, ``"1:3"``, ``"4"``.

Both ends are inclusive. An open start means node 0; an open end means the last node, so a range only becomes a
concrete set of indices once the node count is known (:meth:`NodeRange.indices`).
"""

from __future__ import annotations

import re

__all__ = ["NodeRange"]

_RANGE = re.compile(r"^\s*(\d*)\s*(:?)\s*(\d*)\s*$")


class NodeRange:
    """A parsed ``targetNodes`` range (a plain class, not a dataclass: the spec decoder parses it from text)."""

    __slots__ = ("start", "end", "text")

    def __init__(self, start: int | None, end: int | None, text: str) -> None:
        self.start = start
        self.end = end  # inclusive; None: open (the last node)
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NodeRange) and (self.start, self.end) == (other.start, other.end)

    def __hash__(self) -> int:
        return hash((self.start, self.end))

    def __repr__(self) -> str:
        return f"NodeRange({self.text!r})"

    @classmethod
    def parse(cls, text: str | int) -> NodeRange:
        raw = str(text)
        m = _RANGE.match(raw)
        if not m or (not m.group(1) and not m.group(3)):
            raise ValueError(f"{raw!r} is not a node range (use N, N:, :M or N:M)")
        lo, colon, hi = m.groups()
        if not colon:
            n = int(lo)
            return cls(n, n, raw)
        start = int(lo) if lo else None
        end = int(hi) if hi else None
        if start is not None and end is not None and end < start:
            raise ValueError(f"{raw!r} ends before it starts")
        return cls(start, end, raw)

    def indices(self, num_nodes: int) -> range:
        """The node indices this range names in a job of ``num_nodes`` nodes; raises ValueError past the end."""
        start = 0 if self.start is None else self.start
        end = num_nodes - 1 if self.end is None else self.end
        if start >= num_nodes or end >= num_nodes:
            raise ValueError(f"{self.text!r} names nodes past the last node ({num_nodes - 1})")
        return range(start, end + 1)

    def __str__(self) -> str:
        return self.text
