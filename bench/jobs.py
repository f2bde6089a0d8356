"""Running a benchmark program as an mnp job, through mnp's own library (``mnp.coordinator.launch``), and
reading rank 0's record back from the events the job reports while it runs.

Rank 0's stdout lines are the record (parsed by the caller); its stderr lines that match ``progress`` are handed
to ``on_progress`` as they come (the ``sizes 3/22`` and ``steps 100/500`` lines of the suites); everything else
is kept to explain a failure. A job that does not succeed raises :class:`BenchError` (an ``MnpError``: the
``mnp`` command prints it on one line) naming the job, its reason and its last lines of output.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnp.errors import MnpError

__all__ = ["JOBS_DIR", "BenchError", "JobRun", "Nodes", "run_job"]

JOBS_DIR = Path(__file__).absolute().parent  # the shipped job files (bench/*.yaml), also in an installed copy
ROOT = JOBS_DIR.parent  # the repository root when run from a checkout
PROGRESS = re.compile(r"\b(sizes|steps) (\d+)/(\d+)\b")
BENCH_ENV = {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


class BenchError(MnpError):
    """A benchmark job that did not succeed, or gave no record."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Nodes:
    """Where a benchmark job runs: how many nodes and ranks, over which transport, and where the nodes come from
    (``hosts`` and ``ssh`` as :func:`mnp.cli.options.nodes_from_options` returns them; None: local nodes)."""

    nodes: int
    ranks_per_node: int
    transport: str = "auto"
    hosts: list[Any] | None = None
    ssh: Any = None
    isolate: bool | None = None
    home: Path | None = None
    timeout_s: float = 1800.0

    @property
    def ranks(self) -> int:
        return self.nodes * self.ranks_per_node


@dataclass
class JobRun:
    job_id: str
    wall_s: float
    stdout: list[str]  # rank 0's
    other: list[str] = field(default_factory=list)  # every other line, prefixed: for error messages


def run_job(name: str, command: list[str], where: Nodes,
            on_progress: Callable[[str, int, int], None] | None = None,
            on_note: Callable[[str], None] | None = None, mpi: str = "mpich") -> JobRun:
    """Launch ``command`` as job ``name`` on ``where``; rank 0's stdout once it succeeded. ``mpi``: the job's
    ``mpi`` field (``auto`` for a program built with another MPI, such as Debian's LAMMPS)."""
    from mnp.coordinator import LaunchRequest, launch
    from mnp.coordinator.events import Event, Note, RankLines
    from mnp.spec.model import spec_from_dict

    out: list[str] = []
    other: list[str] = []

    def sink(ev: Event) -> None:
        if isinstance(ev, RankLines):
            if ev.node == 0 and ev.rank == 0 and ev.stream == "stdout":
                out.extend(ev.lines)
                return
            for line in ev.lines:
                m = PROGRESS.search(line) if ev.rank == 0 else None
                if m and on_progress:
                    on_progress(m.group(1), int(m.group(2)), int(m.group(3)))
                elif not m:
                    other.append(f"[node {ev.node} rank {ev.rank}] {line}")
        elif isinstance(ev, Note) and ev.kind in ("warning", "security") and on_note:
            on_note(ev.text)

    fields: dict[str, Any] = {"name": name, "nodes": where.nodes, "ranks_per_node": where.ranks_per_node,
                              "command": command, "env": BENCH_ENV, "mpi": mpi, "transport": where.transport,
                              "timeout": where.timeout_s}
    result = launch(LaunchRequest(spec=spec_from_dict(fields), nodes=where.nodes, isolate=where.isolate,
                                  events=sink, hosts=where.hosts, ssh=where.ssh, home=where.home, grace_s=2.0))
    if result.state != "SUCCEEDED":
        tail = "; ".join(other[-4:])
        raise BenchError(f"{name}: job {result.job_id} {result.state}: {result.reason}" +
                         (f"; last output: {tail}" if tail else ""), exit_code=result.exit_code or 1)
    return JobRun(result.job_id, result.wall_s, out, other)
