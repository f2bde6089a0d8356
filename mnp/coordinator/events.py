"""What a job reports while it runs: typed events handed to a callback. The library never prints; the CLI
(:mod:`mnp.cli.render`) shows them, the doctor keeps them, tests collect them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RankLines", "Note", "Progress", "JobCreated", "Event", "EventSink", "ignore"]


@dataclass(frozen=True)
class RankLines:
    """Complete lines a rank wrote (``rank`` -1: the launcher, mpirun/mpiexec, itself), or a named process
    (``process``, with ``rank`` -1)."""

    node: int
    rank: int
    stream: str  # "stdout" | "stderr"
    lines: list[str]
    process: str = ""


@dataclass(frozen=True)
class Note:
    """One line for the user. ``kind``: info, warning, security (a refused peer message), explain (--explain),
    advice (the end of a job: what its telemetry suggests)."""

    kind: str
    text: str


@dataclass(frozen=True)
class JobCreated:
    """The job has its id and its record (first thing, before any node exists): ``mnp cancel ID`` works from now."""

    job_id: str
    name: str
    dir: str


@dataclass(frozen=True)
class Progress:
    """``what`` done/wanted (bring-up: "hosts ready", "nodes up"); ``final`` once that step is over."""

    what: str
    done: int
    wanted: int
    detail: str = ""
    final: bool = False


Event = RankLines | Note | Progress | JobCreated
EventSink = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """The default sink: a library caller that wants nothing shown."""
