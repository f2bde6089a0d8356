"""The benchmark registry, the run options and the records a benchmark returns. No MPI here.

The numbers in this module are OSU Micro-Benchmarks 7.4's methodology (sizes, iteration and warm-up counts, the
8 KiB large-message threshold, the window of 64), restated from its documentation, not its code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

OSU_VERSION = "7.4"
DATATYPE = "MPI_CHAR"  # OMB 7.4's default datatype (-T), the only one this port runs
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
        """OMB 7.4's sizes: doubling from the minimum; a size of zero elements is skipped (``-m 0:`` starts at 1)."""
        lo = self.min_size if opts.min_size is None else max(opts.min_size, self.min_size)
        return [n for n in message_sizes(lo, self.max_size if opts.max_size is None else opts.max_size) if n > 0]

    def counts(self, size: int, opts: Options) -> tuple[int, int]:
        """(iterations, warm-up) for one size: OSU's small/large defaults unless -i / -x gave them."""
        iters, warm = self.small if size <= LARGE_MESSAGE else self.large
        return (iters if opts.iterations is None else opts.iterations,
                warm if opts.warmup is None else opts.warmup)


MiB = 1 << 20
Runner = Callable[..., list[Row]]
RUNNERS: dict[str, Runner] = {}  # filled by bench.osu.benchmarks (NumPy), apart from the specs (no NumPy)


def _spec(name: str, title: str, column: str, unit: str, min_size: int, max_size: int, small: tuple[int, int],
          large: tuple[int, int], ranks: int | None = None) -> Spec:
    return Spec(name, title, column, unit, min_size, max_size, small, large, ranks,
                lambda *a: RUNNERS[name](*a))


# OMB 7.4's benchmarks: title, column, sizes, (iterations, warm-up) up to 8 KiB and above, ranks.
BENCHMARKS: dict[str, Spec] = {s.name: s for s in (
    _spec("latency", "Latency Test", "Avg Latency(us)", "us", 0, 4 * MiB, (10000, 100), (1000, 10), 2),
    _spec("bw", "Bandwidth Test", "Bandwidth (MB/s)", "MB/s", 1, 4 * MiB, (100, 10), (20, 2), 2),
    _spec("bibw", "Bi-Directional Bandwidth Test", "Bandwidth (MB/s)", "MB/s", 1, 4 * MiB, (100, 10), (20, 2), 2),
    _spec("allreduce", "Allreduce Latency Test", "Avg Latency(us)", "us", 1, 1 * MiB, (1000, 100), (100, 10)),
)}


def benchmark(name: str) -> Callable[[Runner], Runner]:
    """Register ``fn(comm, path, spec, opts, progress) -> list[Row]`` as the code of benchmark ``name`` (its spec
    is in ``BENCHMARKS``); ``progress(done, total, size)`` is called on every rank after each size."""
    if name not in BENCHMARKS:
        raise KeyError(f"no benchmark spec {name!r}")

    def register(fn: Runner) -> Runner:
        RUNNERS[name] = fn
        return fn

    return register


def message_sizes(lo: int, hi: int) -> Iterator[int]:
    """OSU's sizes: ``lo``, then doubling (0 is followed by 1), up to and including ``hi``."""
    n = lo
    while n <= hi:
        yield n
        n = n * 2 if n else 1


def parse_size_range(text: str) -> tuple[int | None, int | None]:
    """``-m`` argument as OMB reads it: ``MAX``, ``MIN:MAX``, ``MIN:`` or ``:MAX``, in bytes (None: the default)."""
    lo, sep, hi = text.partition(":")
    try:
        mn = int(lo) if sep and lo else None
        mx = int(hi) if sep and hi else (int(lo) if not sep else None)
    except ValueError:
        raise ValueError(f"-m: expected [MIN:]MAX in bytes, got {text!r}") from None
    if (mn is None and mx is None) or (mx is not None and mx < 0) or \
            (mn is not None and (mn < 0 or (mx is not None and mn > mx))):
        raise ValueError(f"-m: expected [MIN:]MAX with 0 <= MIN <= MAX, got {text!r}")
    return mn, mx
