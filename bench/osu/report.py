"""OSU's text table and the machine-readable ``OSU-JSON {...}`` line, and reading that line back.

Text: ``# OSU MPI <title> v7.4`` naming this as mnp's Python port and the call path, one ``#`` line of
environment, the column header, then rows ``%-10d%20.2f`` (with ``-f``: min, max ``%20.2f`` and iterations
``%12d``). JSON: one line, ``OSU-JSON `` then a compact object with the records as columns (sizes, values,
iterations, warm-up, min/max for collectives) and the environment.
"""

from __future__ import annotations

import json
from typing import Any

from bench.osu.suite import OSU_VERSION, Result, Spec

JSON_MARK = "OSU-JSON "


def text_lines(result: Result, spec: Spec, full: bool = False) -> list[str]:
    env = result.env
    lines = [f"# OSU MPI {spec.title} v{OSU_VERSION} (mnp Python port: bench.osu, call path {result.path})",
             (f"# {env.get('mpi_library')}, FI_PROVIDER={env.get('fi_provider')}, {env.get('nodes')} node(s), "
              f"{env.get('ranks')} ranks")]
    with_stats = full and any(r.min is not None for r in result.rows)
    header = f"{'# Size':<16}{spec.column}"
    if with_stats:
        header += f"{'Min Latency(us)':>20}{'Max Latency(us)':>20}{'Iterations':>12}"
    lines.append(header)
    for r in result.rows:
        row = f"{r.size:<10d}{r.value:20.2f}"
        if with_stats:
            row += f"{r.min:20.2f}{r.max:20.2f}{r.iterations:12d}"
        lines.append(row)
    return lines


def json_line(result: Result, spec: Spec) -> str:
    rec: dict[str, Any] = {
        "osu_version": OSU_VERSION, "port": "mnp bench.osu", "benchmark": result.benchmark, "path": result.path,
        "unit": result.unit, "column": spec.column, "sizes": [r.size for r in result.rows],
        "values": [round(r.value, 4) for r in result.rows], "iterations": [r.iterations for r in result.rows],
        "warmup": [r.warmup for r in result.rows]}
    if any(r.min is not None for r in result.rows):
        rec["min"] = [round(r.min or 0.0, 4) for r in result.rows]
        rec["max"] = [round(r.max or 0.0, 4) for r in result.rows]
    rec["env"] = result.env
    return JSON_MARK + json.dumps(rec, separators=(",", ":"))


def parse_json_lines(text: str) -> list[dict[str, Any]]:
    """Every OSU-JSON record in ``text`` (e.g. mnp's output, where lines start with ``[node 0 rank 0] ``)."""
    return [json.loads(line.split(JSON_MARK, 1)[1]) for line in text.splitlines() if JSON_MARK in line]
