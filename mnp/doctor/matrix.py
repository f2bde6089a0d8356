"""The doctor's latency matrix in text and in files.

Up to :data:`GRID_MAX_NODES` nodes it is printed whole, node by node. Above, an N x N grid is unreadable (40 nodes
are 40 columns of 7 characters), so the text is a summary -- pairs measured, median, min and max by path, how many
are over their path's band -- and the :data:`WORST` slowest pairs; the whole matrix stays in ``--json`` and can be
written to a file (:func:`matrix_csv`, :func:`matrix_json`; ``mnp doctor --matrix FILE``).
"""

from __future__ import annotations

import csv
import io
import statistics
from typing import Any

__all__ = ["GRID_MAX_NODES", "WORST", "latency_text", "matrix_csv", "matrix_json"]

GRID_MAX_NODES = 16
WORST = 10

_PATHS = ("shm", "tcp-host", "tcp", "efa")


def _names(probe: dict[str, Any], n: int) -> list[str]:
    names = [str(f.get("hostname", "?")) for f in probe.get("nodes", [])][:n]
    return names + ["?"] * (n - len(names))


def _grid(matrix: list[list[float | None]], names: list[str]) -> list[str]:
    short = [nm[:12] for nm in names]
    cells = [["-" if v is None else f"{v:.1f}" for v in row] for row in matrix]
    w = max(6, *(len(x) for row in cells for x in row))
    lab = max(len(f"{i} {nm}") for i, nm in enumerate(short))
    lines = ["latency, half round trip (us):", " " * lab + "".join(f" {i:>{w}}" for i in range(len(matrix)))]
    for i, row in enumerate(cells):
        lines.append(f"{f'{i} {short[i]}':<{lab}}" + "".join(f" {x:>{w}}" for x in row))
    return lines


def _pairs(matrix: list[list[float | None]], judged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every measured pair: the latency check's rows (path band, fastest tenth, judged) where there are any, else
    the matrix's upper triangle and diagonal, path unknown."""
    if judged:
        return judged
    return [{"nodes": [i, j], "us": v, "band": "?"} for i, row in enumerate(matrix) for j, v in enumerate(row)
            if j >= i and v is not None]


def _over(p: dict[str, Any]) -> bool:
    ceiling = p.get("ceiling_us")
    return ceiling is not None and float(p.get("p10_us", p["us"])) > float(ceiling)


def _summary(matrix: list[list[float | None]], names: list[str], judged: list[dict[str, Any]],
             worst: int) -> list[str]:
    pairs = _pairs(matrix, judged)
    lines = [f"latency, half round trip (us): {len(matrix)} nodes, {len(pairs)} pair(s) measured; the full matrix "
             "is in --json and --matrix FILE"]
    if not pairs:
        return lines
    by_path: dict[str, list[dict[str, Any]]] = {}
    for p in pairs:
        by_path.setdefault(str(p.get("band") or "?"), []).append(p)
    order = [k for k in _PATHS if k in by_path] + sorted(k for k in by_path if k not in _PATHS)
    lines.append(f"  {'path':<9} {'pairs':>6} {'median':>9} {'min':>9} {'max':>9}  over band")
    for path in order:
        us = [float(p["us"]) for p in by_path[path]]
        ceiling = by_path[path][0].get("ceiling_us")
        over = sum(_over(p) for p in by_path[path])
        crowded = sum(_over(p) and p.get("judged") is False for p in by_path[path])
        band = (f"{over} (band <= {float(ceiling):g} us" + (f"; {crowded} not judged" if crowded else "") + ")"
                if ceiling is not None else "-")
        lines.append(f"  {path:<9} {len(us):>6} {statistics.median(us):>9.1f} {min(us):>9.1f} {max(us):>9.1f}  "
                     f"{band}")
    slowest = sorted(pairs, key=lambda p: -float(p["us"]))[:worst]
    lines.append(f"slowest {len(slowest)} pair(s):")
    for p in slowest:
        a, b = p["nodes"]
        who = f"node {a} ({names[a]}), 2 ranks" if a == b else f"node {a}-{b} ({names[a]}, {names[b]})"
        notes = [str(p.get("band") or "?")]
        if _over(p):
            notes.append(f"over its band: fastest tenth {float(p['p10_us']):.1f} us")
        if p.get("judged") is False:
            notes.append("not judged: its ranks shared a CPU")
        lines.append(f"  {float(p['us']):>9.1f}  {who}  [{'; '.join(notes)}]")
    return lines


def latency_text(probe: dict[str, Any], judged: list[dict[str, Any]] | None = None,
                 grid_max: int = GRID_MAX_NODES, worst: int = WORST) -> list[str]:
    """The matrix's lines in the report: the grid up to ``grid_max`` nodes, else the summary and the ``worst``
    slowest pairs. ``judged``: the latency check's pairs (path band, fastest tenth, judged), where it has them."""
    matrix = probe.get("latency_us") or []
    if len(matrix) < 2:
        return []
    names = _names(probe, len(matrix))
    if len(matrix) <= grid_max:
        return _grid(matrix, names)
    return _summary(matrix, names, judged or [], worst)


def matrix_csv(probe: dict[str, Any]) -> str:
    """The whole matrix as CSV: a header ``node,hostname,0,1,...``, then one row per node (empty: not measured)."""
    matrix = probe.get("latency_us") or []
    names = _names(probe, len(matrix))
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["node", "hostname", *range(len(matrix))])
    for i, row in enumerate(matrix):
        w.writerow([i, names[i], *("" if v is None else f"{v:.3f}" for v in row)])
    return out.getvalue()


def matrix_json(probe: dict[str, Any], judged: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The whole matrix as one object: node names, ``latency_us`` (half round trip, null: not measured), and each
    pair's path band and verdict where the latency check judged it."""
    matrix = probe.get("latency_us") or []
    return {"unit": "us, half round trip", "nodes": _names(probe, len(matrix)), "latency_us": matrix,
            "pairs": judged or []}
