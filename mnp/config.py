"""Settings and their defaults, resolved in one place: the option given, else ``MNP_<NAME>``, else the default.

A value from the environment that does not parse is a usage error naming the variable (exit 2).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import TypeVar

from mnp.errors import UsageError

__all__ = ["DEFAULTS", "setting", "seconds"]

#: name -> default; the environment variable is ``MNP_`` + the name in capitals
DEFAULTS: dict[str, float] = {
    "grace": 5.0,  # seconds between SIGTERM and SIGKILL when ranks are stopped
    "heartbeat": 1.0,  # seconds between pings, both ways
    "dead_after": 15.0,  # seconds of silence after which a node (or, for an agent, the coordinator) is lost
    "join_timeout": 120.0,  # seconds for every agent to say hello
    "port": 8740,  # the coordinator's port where nodes dial in (AWS Batch)
    "notify_timeout": 10.0,  # seconds a --notify command may run before it is killed
    "telemetry_interval": 1.0,  # seconds between samples of the job's processes on each node (0: off)
}

T = TypeVar("T")


def seconds(text: str, name: str = "value") -> float:
    """A finite, non-negative number of seconds no longer than a week (nan, inf and absurd values are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{name}: {text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0 or value > 7 * 86400:
        raise UsageError(f"{name}: {text!r} must be a finite number of seconds between 0 and 604800")
    return value


def setting(name: str, given: T | None, cast: Callable[[str, str], T] | None = None,
            environ: Mapping[str, str] | None = None) -> T:
    """``given`` if not None, else ``$MNP_<NAME>`` parsed by ``cast(text, variable)``, else the default."""
    if given is not None:
        return given
    var = "MNP_" + name.upper()
    raw = (os.environ if environ is None else environ).get(var)
    if raw:
        return (cast or seconds)(raw, var)  # type: ignore[return-value]
    return DEFAULTS[name]  # type: ignore[return-value]
