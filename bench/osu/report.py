"""OMB 7.4's text, exactly, then mnp's own comment block; and the JSON record of one run.

Text, as OMB 7.4 built with its default configuration prints it (FIELD_WIDTH 18, FLOAT_PRECISION 2): an empty
line, ``# OSU MPI <title> v7.4``, ``# Datatype: MPI_CHAR.``, the column header ``%-10s%18s``, then one row per
size ``%-10d%18.2f`` (with ``-f``: min and max ``%18.2f`` and iterations ``%12d``). Nothing of mnp's goes into
those lines: where the figures came from follows in a block of ``# mnp:`` comment lines after the table, which
tools that read OMB output skip as they skip OMB's own comments.

JSON (``--json``): one object per run, the rows as columns (``sizes``, ``values``, ``iterations``, ``warmup``;
``rank_min``/``rank_max`` for collectives: the fastest and slowest rank's average) and ``env``
(:mod:`bench.osu.facts`).
"""

from __future__ import annotations

import json
from typing import Any

from bench.osu.suite import DATATYPE, OSU_VERSION, Result, Spec

FIELD = 18  # OMB's configure.ac: AC_DEFINE([FIELD_WIDTH], [18])


def omb_header(spec: Spec, full: bool = False) -> list[str]:
    """The lines OMB prints before the first row."""
    header = f"{'# Size':<10}{spec.column:>{FIELD}}"
    if full:
        header += f"{'Min Latency(us)':>{FIELD}}{'Max Latency(us)':>{FIELD}}{'Iterations':>12}"
    return ["", f"# OSU MPI {spec.title} v{OSU_VERSION}", f"# Datatype: {DATATYPE}.", header]


def omb_row(size: int, value: float, full: bool = False, lo: float | None = None, hi: float | None = None,
            iterations: int = 0) -> str:
    row = f"{size:<10d}{value:{FIELD}.2f}"
    if full:
        row += f"{lo or 0.0:{FIELD}.2f}{hi or 0.0:{FIELD}.2f}{iterations:12d}"
    return row


def with_stats(result: Result, full: bool) -> bool:
    return full and any(r.min is not None for r in result.rows)


def text_lines(result: Result, spec: Spec, full: bool = False) -> list[str]:
    """OMB's lines for one run, then the ``# mnp:`` block."""
    f = with_stats(result, full)
    return [*omb_header(spec, f), *(omb_row(r.size, r.value, f, r.min, r.max, r.iterations) for r in result.rows),
            *meta_lines(result.env, result.path)]


def meta_lines(env: dict[str, Any], path: str, jobs: list[str] | None = None) -> list[str]:
    """Where the figures came from, as comment lines after OMB's table."""
    jobs = jobs if jobs is not None else [j for j in [env.get("mnp_job_id")] if j]
    where = f"{env.get('nodes')} node(s), {env.get('ranks')} ranks"
    lines = [f"# mnp: port bench.osu, call path {path}; {env.get('mpi_library')}",
             f"# mnp: transport {env.get('transport')} ({where})" +
             (f", interface {env['iface']}" if env.get("iface") and env.get("transport") != "shm" else "") +
             (f"; jobs {' '.join(jobs)}" if jobs else "")]
    if env.get("cpu"):
        lines.append(f"# mnp: {env['cpu']}, {env.get('cpus')} CPU(s), kernel {env.get('kernel')}, "
                     f"THP {env.get('thp')}")
    return lines


def record(result: Result, spec: Spec) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "osu_version": OSU_VERSION, "port": "mnp bench.osu", "benchmark": result.benchmark, "path": result.path,
        "unit": result.unit, "column": spec.column, "title": spec.title, "datatype": DATATYPE,
        "sizes": [r.size for r in result.rows], "values": [r.value for r in result.rows],
        "iterations": [r.iterations for r in result.rows], "warmup": [r.warmup for r in result.rows]}
    if any(r.min is not None for r in result.rows):
        rec["rank_min"] = [r.min for r in result.rows]
        rec["rank_max"] = [r.max for r in result.rows]
    rec["env"] = result.env
    return rec


def json_text(result: Result, spec: Spec) -> str:
    return json.dumps(record(result, spec), separators=(",", ":"))
