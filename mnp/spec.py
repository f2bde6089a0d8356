"""Job files: YAML in, a validated :class:`JobSpec` out.

Every field is documented in README.md ("Job file"). Unknown fields are errors; so is a field of the wrong type
or out of range. Errors are :class:`~mnp.errors.SpecError` naming the field by its dotted path, e.g.
``node_ranges[1].target_nodes``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import SpecError
from .noderange import NodeRange

__all__ = ["JobSpec", "NodeRangeSpec", "load_spec", "spec_from_dict", "parse_size"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?)?B?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
          "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}


def parse_size(value: str | int) -> int:
    """``512Mi`` -> bytes. Bare numbers are bytes; ``K/M/G/T`` are powers of 1000, ``Ki/Mi/Gi/Ti`` of 1024."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512Mi")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be positive")
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a size (use e.g. 512Mi, 2Gi or a number of bytes)")
    n = float(m.group(1)) * _UNITS[(m.group(2) or "").lower()]
    if n < 1:
        raise ValueError("must be positive")
    return int(n)


def _command(value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            words = shlex.split(value)
        except ValueError as e:
            raise ValueError(f"cannot split command: {e}") from None
    elif isinstance(value, list) and all(isinstance(w, (str, int, float)) for w in value):
        words = [str(w) for w in value]
    else:
        raise ValueError("must be a string or a list of strings")
    if not words:
        raise ValueError("must not be empty")
    return words


def _env(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError("must be a map of NAME: value")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k):
            raise ValueError(f"{k!r} is not a valid environment variable name")
        if isinstance(v, (dict, list)) or v is None:
            raise ValueError(f"value of {k} must be a string or a number")
        out[k] = str(v).lower() if isinstance(v, bool) else str(v)
    return out


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class NodeRangeSpec(_Model):
    """One entry of ``node_ranges``: what the nodes of ``target_nodes`` run instead of the job's defaults."""

    target_nodes: NodeRange
    command: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    ranks_per_node: int | None = Field(default=None, ge=1, le=4096)

    @field_validator("target_nodes", mode="before")
    @classmethod
    def _range(cls, v: Any) -> NodeRange:
        if isinstance(v, NodeRange):
            return v
        if not isinstance(v, (str, int)) or isinstance(v, bool):
            raise ValueError("must be a string such as '0:', ':2', '1:3' or '0'")
        return NodeRange.parse(v)

    @field_validator("command", mode="before")
    @classmethod
    def _cmd(cls, v: Any) -> list[str] | None:
        return None if v is None else _command(v)

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, v: Any) -> dict[str, str]:
        return _env(v)

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class JobSpec(_Model):
    """A validated job. Node-dependent checks (ranges against the node count) happen in :mod:`mnp.plan`."""

    name: str = Field(default="job", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    nodes: int = Field(default=1, ge=1, le=1000)
    main_node: int = Field(default=0, ge=0)
    ranks_per_node: int | None = Field(default=None, ge=1, le=4096)
    command: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    mpi: Literal["mpich", "openmpi", "auto"] = "auto"
    shm_size: int | None = None
    transport: Literal["auto", "tcp", "efa", "shm"] = "auto"
    timeout: float | None = Field(default=None, gt=0)
    workdir: str | None = None
    node_ranges: list[NodeRangeSpec] = Field(default_factory=list)

    @field_validator("command", mode="before")
    @classmethod
    def _cmd(cls, v: Any) -> list[str] | None:
        return None if v is None else _command(v)

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, v: Any) -> dict[str, str]:
        return _env(v)

    @field_validator("shm_size", mode="before")
    @classmethod
    def _shm(cls, v: Any) -> int | None:
        return None if v is None else parse_size(v)

    @model_validator(mode="after")
    def _whole(self) -> JobSpec:
        if self.command is None and not any(r.command for r in self.node_ranges):
            raise ValueError("command: a job needs a command (at the top level or in node_ranges)")
        return self

    def with_nodes(self, nodes: int) -> JobSpec:
        return self.model_copy(update={"nodes": nodes})


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _first_error(e: ValidationError) -> tuple[str, str]:
    err = e.errors(include_url=False)[0]
    field = _loc(err["loc"])
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif err["type"] == "missing":
        msg = "required field is missing"
    msg = msg.removeprefix("Value error, ")
    if field == "" and ":" in msg:  # model-level check that names its own field
        field, msg = (s.strip() for s in msg.split(":", 1))
    return field, msg


def spec_from_dict(data: Any, source: str | None = None, default_name: str | None = None) -> JobSpec:
    if not isinstance(data, dict):
        raise SpecError("", "a job file must be a YAML map of fields", source)
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise SpecError(str(bad[0]), "field names must be strings", source)
    if "name" not in data and default_name:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "-", default_name).lstrip("-_.") or "job"
        data = {**data, "name": safe}
    try:
        return JobSpec.model_validate(data)
    except ValidationError as e:
        field, msg = _first_error(e)
        raise SpecError(field, msg, source) from None


def load_spec(path: str | Path) -> JobSpec:
    """Read and validate a job file. Raises :class:`SpecError` (exit 2) on any problem."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise SpecError("", f"cannot read job file: {e.strerror}", str(p)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError("", f"{where}invalid YAML: {problem}", str(p)) from None
    return spec_from_dict(data, str(p), default_name=p.stem)
