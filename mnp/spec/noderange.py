"""Node indices as sets: :class:`RangeSet` (``0-3,5``), and AWS Batch's ``targetNodes`` syntax, :class:`NodeRange`.

:class:`RangeSet` is an immutable set of node indices with the builtin set API (``in``, iteration in ascending
order, ``len``, ``|`` ``&`` ``-`` ``^``, ``union``...) and a folded text form, ``fold()`` -> ``"0-3,5"``, which
:meth:`RangeSet.parse` reads back.

A :class:`NodeRange` is one ``targetNodes`` value: ``"0:"``, ``":2"``, ``"1:3"``, ``"4"``. Both ends are
inclusive; an open start means node 0 and an open end the last node, so a range becomes a concrete
:class:`RangeSet` only once the node count is known (:meth:`NodeRange.nodes`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from typing import Any

__all__ = ["NodeRange", "RangeSet"]

_RANGE = re.compile(r"[ \t]*([0-9]*)[ \t]*(:?)[ \t]*([0-9]*)[ \t]*")
_PART = re.compile(r"([0-9]+)(?:-([0-9]+))?")
MAX_INDEX = 1_000_000  # far above any node count; bounds what a range's text can make us allocate


class RangeSet(AbstractSet[int]):
    """An immutable set of non-negative integers (node indices) that folds to ``"0-3,5"``."""

    __slots__ = ("_items", "_set")

    def __init__(self, items: Iterable[int] = ()) -> None:
        values = frozenset(items)
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{v!r} is not a node index (a non-negative integer)")
        self._set = values
        self._items = tuple(sorted(values))

    @classmethod
    def _from_iterable(cls, it: Iterable[Any]) -> RangeSet:  # type: ignore[override]
        return cls(it)

    @classmethod
    def parse(cls, text: str) -> RangeSet:
        """``"0-3,5"`` -> {0, 1, 2, 3, 5}; the empty string is the empty set. Raises ValueError."""
        out: set[int] = set()
        if not text.strip():
            return cls()
        for part in text.split(","):
            m = _PART.fullmatch(part.strip())
            if not m:
                raise ValueError(f"{part.strip()!r} is not N or N-M")
            if any(g and len(g) > 7 for g in m.groups()):
                raise ValueError(f"{part.strip()!r} goes past {MAX_INDEX}")
            lo = int(m.group(1))
            hi = int(m.group(2)) if m.group(2) else lo
            if hi < lo:
                raise ValueError(f"{part.strip()!r} ends before it starts")
            if hi > MAX_INDEX:
                raise ValueError(f"{part.strip()!r} goes past {MAX_INDEX}")
            out.update(range(lo, hi + 1))
        return cls(out)

    @classmethod
    def span(cls, start: int, stop: int) -> RangeSet:
        """``start`` to ``stop - 1``, like :class:`range`."""
        return cls(range(start, stop))

    def __contains__(self, value: object) -> bool:
        return value in self._set

    def __iter__(self) -> Iterator[int]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._set)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RangeSet):
            return self._set == other._set
        return super().__eq__(other)

    def union(self, *others: Iterable[int]) -> RangeSet:
        return RangeSet(self._set.union(*others))

    def intersection(self, *others: Iterable[int]) -> RangeSet:
        return RangeSet(self._set.intersection(*others))

    def difference(self, *others: Iterable[int]) -> RangeSet:
        return RangeSet(self._set.difference(*others))

    def symmetric_difference(self, other: Iterable[int]) -> RangeSet:
        return RangeSet(self._set.symmetric_difference(other))

    def issubset(self, other: Iterable[int]) -> bool:
        return self._set.issubset(other)

    def issuperset(self, other: Iterable[int]) -> bool:
        return self._set.issuperset(other)

    def runs(self) -> list[tuple[int, int]]:
        """Maximal runs of consecutive indices as inclusive ``(first, last)`` pairs, ascending."""
        out: list[tuple[int, int]] = []
        for v in self._items:
            if out and out[-1][1] == v - 1:
                out[-1] = (out[-1][0], v)
            else:
                out.append((v, v))
        return out

    def fold(self) -> str:
        """The folded text form: ``"0-3,5"``; ``""`` for the empty set."""
        return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in self.runs())

    def __str__(self) -> str:
        return self.fold()

    def __repr__(self) -> str:
        return f"RangeSet({self.fold()!r})"


class NodeRange:
    """A parsed ``targetNodes`` range. Immutable; equal when both ends are (the text may differ in spacing)."""

    __slots__ = ("end", "start", "text")
    start: int | None
    end: int | None  # inclusive; None: open (the last node)
    text: str

    def __init__(self, start: int | None, end: int | None, text: str) -> None:
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        object.__setattr__(self, "text", text)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"NodeRange is immutable (cannot set {name})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NodeRange) and (self.start, self.end) == (other.start, other.end)

    def __hash__(self) -> int:
        return hash((self.start, self.end))

    def __repr__(self) -> str:
        return f"NodeRange({self.text!r})"

    def __str__(self) -> str:
        return self.text

    @classmethod
    def parse(cls, text: str | int) -> NodeRange:
        """``"1:3"`` (or an integer node index) -> NodeRange. Raises ValueError naming the text."""
        raw = str(text)
        m = _RANGE.fullmatch(raw)
        if not m or (not m.group(1) and not m.group(3)):
            raise ValueError(f"{raw!r} is not a node range (use N, N:, :M or N:M)")
        lo, colon, hi = m.groups()
        if any(len(g) > 7 or (g and int(g) > MAX_INDEX) for g in (lo, hi)):
            raise ValueError(f"{raw!r} names nodes past {MAX_INDEX}")
        if not colon:
            return cls(int(lo), int(lo), raw.strip())
        start = int(lo) if lo else None
        end = int(hi) if hi else None
        if start is not None and end is not None and end < start:
            raise ValueError(f"{raw!r} ends before it starts")
        return cls(start, end, raw.strip())

    def indices(self, num_nodes: int) -> range:
        """The node indices this range names in a job of ``num_nodes`` nodes, in order (a range is contiguous);
        raises ValueError past the end."""
        start = 0 if self.start is None else self.start
        end = num_nodes - 1 if self.end is None else self.end
        if start >= num_nodes or end >= num_nodes:
            raise ValueError(f"{self.text!r} names nodes past the last node ({num_nodes - 1})")
        return range(start, end + 1)

    def nodes(self, num_nodes: int) -> RangeSet:
        """:meth:`indices` as a :class:`RangeSet`."""
        return RangeSet(self.indices(num_nodes))
