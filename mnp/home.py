"""Where mnp keeps its state on this machine (records, the pool's file, the front's socket): ``$MNP_HOME``, else
``~/.mnp``. Stdlib ``os`` only, so the launch client's lightest path (:mod:`mnp.cli.front`) shares it."""

from __future__ import annotations

import os

__all__ = ["home_dir"]


def home_dir() -> str:
    return os.environ.get("MNP_HOME") or os.path.join(os.path.expanduser("~"), ".mnp")
