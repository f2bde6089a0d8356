"""Every figure with its spread: min, median and max over repetitions, and one line when the spread is wide.

A single number from a shared, noisy machine (or from a bimodal figure) says little; the median of several
separate runs, with its min and max beside it, says how much to trust it. ``WIDE``: max/min above 1.2 is called
wide. Used by every ``mnp bench`` command, for their text and their ``--json``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["WIDE", "Figure", "wide_note"]

WIDE = 1.2


@dataclass(frozen=True)
class Figure:
    """One figure measured ``len(values)`` times (one value per repetition, in run order)."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Figure:
        if not values:
            raise ValueError("a figure needs at least one value")
        return cls(tuple(float(v) for v in values))

    @property
    def median(self) -> float:
        return float(statistics.median(self.values))

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    @property
    def spread(self) -> float:
        """max / min (1.0: every repetition gave the same figure; inf when min is 0)."""
        return self.max / self.min if self.min > 0 else (1.0 if self.max == 0 else float("inf"))

    @property
    def wide(self) -> bool:
        return self.spread > WIDE

    def to_json(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.min, "max": self.max, "spread": round(self.spread, 4),
                "values": list(self.values)}

    def short(self, fmt: str = ".2f") -> str:
        return f"{self.median:{fmt}} ({self.min:{fmt}}-{self.max:{fmt}})"


def wide_note(figures: Sequence[tuple[str, Figure]], what: str = "") -> str | None:
    """One line naming how many figures have a wide spread and the widest, or None when none has."""
    wide = [(label, f) for label, f in figures if f.wide]
    if not wide:
        return None
    label, worst = max(wide, key=lambda lf: lf[1].spread)
    reps = len(worst.values)
    return (f"note: {what + ': ' if what else ''}spread wide (max/min > {WIDE:g}) for {len(wide)} of {len(figures)} "
            f"figure(s) over {reps} repetition(s), widest {label}: {worst.min:.4g} to {worst.max:.4g} "
            f"({worst.spread:.2f}x); the machine was busy or the figure is bimodal: trust the median, or rerun "
            f"with more --reps")
