"""Reading a small text file the user named (a job file, a hostfile), safely.

Only a regular file is read: a FIFO would block, ``/dev/zero`` never ends, a directory is no text. The file is
opened without blocking and checked with ``fstat`` on the open descriptor (no race between a check and the
open), read up to a size bound, and decoded as UTF-8. Problems are a :class:`ValueError` with a short reason the
caller puts after the file's name.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["MAX_BYTES", "read_text"]

MAX_BYTES = 1 << 20  # 1 MiB: far more than any job file or hostfile

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n % (1 << 20) == 0 else f"{n} bytes"


def read_text(path: str | Path, limit: int = MAX_BYTES) -> str:
    """The UTF-8 text of the regular file ``path``, at most ``limit`` bytes of it. Raises ValueError(reason)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise ValueError(e.strerror or str(e)) from None
    except ValueError as e:  # e.g. a NUL byte in the path
        raise ValueError(str(e)) from None
    chunks: list[bytes] = []
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = next((name for test, name in _KINDS if test(mode)), "not a regular file")
            raise ValueError(f"not a regular file ({what})" if what != "not a regular file" else what)
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 16, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise ValueError(f"larger than {_size(limit)}")
    except OSError as e:
        raise ValueError(e.strerror or str(e)) from None
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
