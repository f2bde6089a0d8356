"""The probe's output, as both sides read it: the program that prints it (:mod:`mnp.doctor.probe`, run as a rank)
and the doctor that reads it back from the job's log (:mod:`mnp.doctor.run`, :mod:`mnp.doctor.analyse`).

Kept apart from the probe program so that importing :mod:`mnp.doctor` never imports the module that
``python -m mnp.doctor.probe`` then runs as ``__main__`` (runpy warns when it finds it imported already).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["PREFIX", "SLOW_FACTOR", "read_probe", "slow_pairs"]

PREFIX = "MNP-PROBE "  # rank 0's one line of output: PREFIX + JSON
SLOW_FACTOR = 3.0  # a pair slower than this x the median is slow


def slow_pairs(matrix: list[list[float | None]], factor: float = SLOW_FACTOR) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, value)``, ``i < j``, slower than ``factor`` x the median of every measured pair."""
    values = [(i, j, v) for i, row in enumerate(matrix) for j, v in enumerate(row) if j > i and v is not None]
    if not values:
        return []
    ordered = sorted(v for _, _, v in values)
    mid = len(ordered) // 2
    med = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return [(i, j, v) for i, j, v in values if med > 0 and v > factor * med]


def read_probe(path: Path) -> dict[str, Any] | None:
    """The probe's JSON from its rank-0 stdout log; None when the line is not there."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    for ln in text.splitlines():
        if ln.startswith(PREFIX):
            try:
                data = json.loads(ln[len(PREFIX):])
            except json.JSONDecodeError:
                return None
            return data if isinstance(data, dict) else None
    return None
