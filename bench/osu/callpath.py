"""What a call path is: the interface the benchmarks time through, and the message tags every path uses.

A benchmark (``benchmarks.py``) decides sizes, barriers and arithmetic; a call path runs the loop that is timed and
returns seconds. The implementations (``paths.Mpi4pyPath``, ``numba_path.NumbaPath``) import this module and never
each other; :func:`bench.osu.paths.make_path` chooses between them.

Tags follow OSU's: 1 for ping-pong, 100 for windowed data, 101 for the bandwidth ack, 10 for bibw's reverse way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

__all__ = ["TAG", "TAG_ACK", "TAG_BACK", "TAG_DATA", "CallPath"]

TAG, TAG_DATA, TAG_ACK, TAG_BACK = 1, 100, 101, 10


class CallPath(Protocol):
    name: str

    def prepare(self, benchmark: str) -> None: ...

    def pingpong(self, sbuf: np.ndarray, rbuf: np.ndarray, size: int, first: bool, peer: int, iters: int,
                 warmup: int) -> float: ...

    def bw(self, sbuf: np.ndarray, rbuf: np.ndarray, size: int, sender: bool, peer: int, iters: int, warmup: int,
           window: int) -> float: ...

    def bibw(self, sbuf: np.ndarray, rbuf: np.ndarray, size: int, peer: int, iters: int, warmup: int,
             window: int) -> float: ...

    def allreduce(self, sbuf: np.ndarray, rbuf: np.ndarray, count: int, iters: int, warmup: int) -> float: ...

    def info(self) -> dict[str, Any]: ...
