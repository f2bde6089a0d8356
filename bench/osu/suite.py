"""The benchmark registry, the run options and the records a benchmark returns. No MPI here.

The numbers in this module are OSU Micro-Benchmarks 7.4's methodology (sizes, iteration and warm-up counts, the
8 KiB large-message threshold, the window of 64), restated from its documentation, not its code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

OSU_VERSION = "7.4"
LARGE_MESSAGE = 8192  # sizes above this use the "large" iteration and warm-up counts
PATHS = ("mpi4py", "numba")


@dataclass(frozen=True)
class Options:
    """What the command line asked for; ``None`` means "OSU's default for this benchmark and size"."""

    min_size: int | None = None
    max_size: int | None = None
    iterations: int | None = None  # -i: the same count for small and large sizes
    warmup: int | None = None  # -x
    window: int = 64  # -W (bw, bibw)
    full: bool = False  # -f: min/max/iterations columns (allreduce)
    path: str = "mpi4py"


@dataclass(frozen=True)
class Row:
    """One message size: the figure OSU prints (``value``), and how it was obtained."""

    size: int
    value: float
    iterations: int
    warmup: int
    min: float | None = None  # collectives: the fastest and slowest rank's average
    max: float | None = None


@dataclass
class Result:
    """What a benchmark returns: everything the text table and the OSU-JSON line are made of."""

    benchmark: str
    path: str
    unit: str
    rows: list[Row]
    env: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Spec:
    """A registered benchmark: its name, OSU's title and column, its size range and the function that runs it."""

    name: str
    title: str  # "Latency Test" -> "# OSU MPI Latency Test v7.4"
    column: str  # "Avg Latency(us)"
    unit: str  # "us" | "MB/s"
    min_size: int
    max_size: int
    small: tuple[int, int]  # (iterations, warm-up) up to LARGE_MESSAGE
    large: tuple[int, int]  # above it
    ranks: int | None  # exactly this many ranks, or None for any number >= 2
    run: Callable[..., list[Row]]

    def sizes(self, opts: Options) -> list[int]:
        return list(message_sizes(self.min_size if opts.min_size is None else max(opts.min_size, self.min_size),
                                  self.max_size if opts.max_size is None else opts.max_size))

    def counts(self, size: int, opts: Options) -> tuple[int, int]:
        """(iterations, warm-up) for one size: OSU's small/large defaults unless -i / -x gave them."""
        iters, warm = self.small if size <= LARGE_MESSAGE else self.large
        return (iters if opts.iterations is None else opts.iterations,
                warm if opts.warmup is None else opts.warmup)


BENCHMARKS: dict[str, Spec] = {}


def benchmark(name: str, *, title: str, column: str, unit: str, min_size: int, max_size: int,
              small: tuple[int, int], large: tuple[int, int],
              ranks: int | None = None) -> Callable[[Callable[..., list[Row]]], Callable[..., list[Row]]]:
    """Register ``fn(comm, path, spec, opts) -> list[Row]`` as benchmark ``name``."""

    def register(fn: Callable[..., list[Row]]) -> Callable[..., list[Row]]:
        BENCHMARKS[name] = Spec(name, title, column, unit, min_size, max_size, small, large, ranks, fn)
        return fn

    return register


def message_sizes(lo: int, hi: int) -> Iterator[int]:
    """OSU's sizes: ``lo``, then doubling (0 is followed by 1), up to and including ``hi``."""
    n = lo
    while n <= hi:
        yield n
        n = n * 2 if n else 1


def parse_size_range(text: str) -> tuple[int | None, int]:
    """``-m`` argument: ``MAX`` or ``MIN:MAX`` in bytes (``MIN:`` alone is not OSU's syntax)."""
    lo, sep, hi = text.rpartition(":")
    try:
        mx = int(hi)
        mn = int(lo) if sep else None
    except ValueError:
        raise ValueError(f"-m: expected [MIN:]MAX in bytes, got {text!r}") from None
    if mx < 0 or (mn is not None and not 0 <= mn <= mx):
        raise ValueError(f"-m: expected 0 <= MIN <= MAX, got {text!r}")
    return mn, mx
