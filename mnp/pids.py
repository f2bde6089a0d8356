"""Whether a process still runs: owners of local clusters and of job records are judged by their pid."""

from __future__ import annotations

import os

__all__ = ["pid_alive", "pid_running"]


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists (also when it is another user's process: signalling it is refused, not absent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def pid_running(pid: int) -> bool:
    """True while ``pid`` exists and has not ended: a zombie (ended, not yet reaped by its parent) is not
    running."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False
