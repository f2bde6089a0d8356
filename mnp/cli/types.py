"""Click parameter types shared by the commands."""

from __future__ import annotations

import math
from typing import Any

import click

__all__ = ["Seconds", "MAX_NODES_OPTION"]

#: the largest node count an option accepts (the job file's own limit is in mnp.spec.jobspec)
MAX_NODES_OPTION = 1000


class Seconds(click.FloatRange):
    """A finite number of seconds from ``min`` to ``max`` (FloatRange alone lets ``nan`` through)."""

    name = "float"  # Click says "is not a valid float"

    def __init__(self, min: float = 0, max: float = 7 * 86400) -> None:  # noqa: A002 - Click's own names
        super().__init__(min, max)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if math.isnan(rv):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return rv
