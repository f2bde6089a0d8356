"""Job files: YAML in, a validated :class:`JobSpec` out.

Every field is documented in README.md ("Job file"). Unknown fields are errors; so is a field of the wrong type
or out of range. Errors are :class:`~mnp.errors.SpecError` naming the field by its dotted path, e.g.
``node_ranges[1].target_nodes``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

from mnp.errors import SpecError
from mnp.spec.noderange import NodeRange

__all__ = ["JobSpec", "NodeRangeSpec", "load_spec", "spec_from_dict", "parse_size"]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
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


def _node_range(v: Any) -> NodeRange:
    if not isinstance(v, (str, int)) or isinstance(v, bool):
        raise ValueError("must be a string such as '0:', ':2', '1:3' or '0'")
    return NodeRange.parse(v)


def _dec_hook(kind: type, value: Any) -> Any:
    if kind is NodeRange:
        return _node_range(value)
    raise NotImplementedError(kind)


_Count = Annotated[int, msgspec.Meta(ge=1, le=4096)]


class NodeRangeSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One entry of ``node_ranges``: what the nodes of ``target_nodes`` run instead of the job's defaults."""

    target_nodes: NodeRange
    command: list[str] | None = None
    env: dict[str, str] = {}
    ranks_per_node: _Count | None = None


class RetryRuleSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One ``retry.evaluate_on_exit`` rule (AWS Batch's ``evaluateOnExit``): patterns may end in ``*``."""

    action: Literal["retry", "exit", "RETRY", "EXIT", "Retry", "Exit"]
    on_exit_code: Annotated[str, msgspec.Meta(pattern=r"^[0-9]*\*?$", max_length=512)] | None = None
    on_reason: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    on_status_reason: Annotated[str, msgspec.Meta(max_length=512)] | None = None


class RetrySpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``retry``: at most ``attempts`` attempts in all (AWS Batch's ``retryStrategy``)."""

    attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 1
    evaluate_on_exit: Annotated[list[RetryRuleSpec], msgspec.Meta(max_length=5)] = []


class JobSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A validated job. Node-dependent checks (ranges against the node count) happen in :mod:`mnp.plan`."""

    name: Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)] = "job"
    nodes: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    main_node: Annotated[int, msgspec.Meta(ge=0)] = 0
    ranks_per_node: _Count | None = None
    command: list[str] | None = None
    env: dict[str, str] = {}
    mpi: Literal["mpich", "openmpi", "auto"] = "auto"
    launcher: Literal["auto", "pmi", "mpirun"] = "auto"
    shm_size: Annotated[int, msgspec.Meta(ge=1)] | None = None
    transport: Literal["auto", "tcp", "efa", "shm"] = "auto"
    timeout: Annotated[float, msgspec.Meta(gt=0)] | None = None
    workdir: str | None = None
    retry: RetrySpec | None = None
    node_ranges: list[NodeRangeSpec] = []

    def with_nodes(self, nodes: int) -> JobSpec:
        return msgspec.structs.replace(self, nodes=nodes)

    def with_main_node(self, main_node: int) -> JobSpec:
        return msgspec.structs.replace(self, main_node=main_node)


_CHOICES = {"mpi": ("mpich", "openmpi", "auto"), "launcher": ("auto", "pmi", "mpirun"), "transport": ("auto", "tcp", "efa", "shm")}
_TYPE_WORDS = {"int": "an integer", "str": "a string", "float": "a number", "bool": "true or false",
               "array": "a list", "object": "a map", "null": "empty"}


def _humane(problem: str, field: str) -> str:
    """msgspec's wording, in the words of the job file."""
    if m := re.match(r"Expected `(\w+)(?: \| null)?` (>=|>|<=|<) (\S+)", problem):
        return f"must be {_TYPE_WORDS.get(m.group(1), m.group(1))} {m.group(2)} {m.group(3).removesuffix('.0')}"
    if m := re.match(r"Expected `(\w+)(?: \| null)?`, got `(\w+)`", problem):
        want, got = (_TYPE_WORDS.get(g, g) for g in m.groups())
        return f"must be {want}, got {got}"
    if m := re.match(r"Expected `str` matching regex '(.*)'", problem):
        return f"must match {m.group(1)}"
    if problem.startswith("Invalid enum value"):
        choices = _CHOICES.get(field.split(".")[-1], ())
        return f"{problem.split(' ', 3)[-1]} is not one of " + ", ".join(f"'{c}'" for c in choices)
    return problem


def _first_error(e: msgspec.ValidationError) -> tuple[str, str]:
    text = str(e)
    m = re.match(r"^(.*?)(?: - at `\$(.*)`)?$", text, re.S)
    problem, path = (m.group(1), (m.group(2) or "")) if m else (text, "")
    path = path.lstrip(".")
    if um := re.match(r"Object contains unknown field `(.*)`", problem):
        return (f"{path}.{um.group(1)}" if path else um.group(1)), "unknown field"
    if mm := re.match(r"Object missing required field `(.*)`", problem):
        return (f"{path}.{mm.group(1)}" if path else mm.group(1)), "required field is missing"
    return path, _humane(problem, path)


def _normalise(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Coerce the fields that take more than one spelling (command, env, shm_size) before type checks."""
    out = dict(data)
    for key, fix in (("command", _command), ("env", _env), ("shm_size", parse_size)):
        if out.get(key) is not None:
            try:
                out[key] = fix(out[key])
            except ValueError as e:
                raise _FieldError(f"{where}{key}", str(e)) from None
    return out


class _FieldError(Exception):
    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem


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
        data = _normalise(data, "")
        if isinstance(data.get("node_ranges"), list):
            data["node_ranges"] = [_normalise(r, f"node_ranges[{i}].") if isinstance(r, dict) else r
                                   for i, r in enumerate(data["node_ranges"])]
    except _FieldError as e:
        raise SpecError(e.field, e.problem, source) from None
    try:
        spec = msgspec.convert(data, JobSpec, dec_hook=_dec_hook)
    except msgspec.ValidationError as e:
        field, msg = _first_error(e)
        raise SpecError(field, msg, source) from None
    if spec.command is None and not any(r.command for r in spec.node_ranges):
        raise SpecError("command", "a job needs a command (at the top level or in node_ranges)", source)
    return spec


def load_spec(path: str | Path) -> JobSpec:
    """Read and validate a job file: mnp YAML, or an AWS Batch multi-node job definition (JSON). Raises
    :class:`SpecError` (exit 2) on any problem."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise SpecError("", f"cannot read job file: {e.strerror}", str(p)) from None
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError("", f"{where}invalid YAML: {problem}", str(p)) from None
    if isinstance(data, dict) and "nodeProperties" in data:  # an AWS Batch job definition, taken unchanged
        from mnp.spec.batchdef import load_batch_jobdef

        data, retry = load_batch_jobdef(data, str(p))
        if retry is not None:
            data["retry"] = {"attempts": retry.attempts, "evaluate_on_exit": [
                {k: v for k, v in (("action", r.action.lower()), ("on_exit_code", r.on_exit_code),
                                   ("on_reason", r.on_reason), ("on_status_reason", r.on_status_reason)) if v}
                for r in retry.rules]}
    return spec_from_dict(data, str(p), default_name=p.stem)
