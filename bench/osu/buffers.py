"""Message buffers the way OMB allocates them: page-aligned, separate send and receive buffers, each filled once
per size before timing (send ``'a'``, receive ``'b'``).

Why this matters (measured, see README "Speed"): with ONE buffer used for both directions, as this suite and
``bench/c/latency.c`` once did, MPICH's shared-memory path took 13.8 us at 64 KiB and 123 us at 1 MiB against
7.7 us and 84 us with two buffers, in C and in Python alike, and the one-buffer figure was bimodal (9.0 or 13.7 us
at 64 KiB from run to run); page alignment made no measurable difference. The buffers come from an anonymous
``mmap`` rather than NumPy's allocator, so they get no ``MADV_HUGEPAGE`` advice either (NumPy gives that to arrays
of 4 MiB and more; OMB's ``posix_memalign`` buffers get none): both codes see the same kind of pages.
"""

from __future__ import annotations

import mmap

import numpy as np

__all__ = ["PAGE", "SENT", "UNSENT", "page_aligned"]

PAGE = mmap.PAGESIZE
SENT, UNSENT = ord("a"), ord("b")  # as OMB's set_buffer_pt2pt fills them


def page_aligned(nbytes: int, dtype: type = np.uint8) -> np.ndarray:
    """A zero-filled array at the start of its own anonymous mapping (page-aligned, at least one page)."""
    size = max(nbytes, 1)
    m = mmap.mmap(-1, -(-size // PAGE) * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(m, np.uint8, count=size).view(dtype)  # the array keeps the mapping alive
