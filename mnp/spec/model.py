"""Job files: YAML in, a validated :class:`JobSpec` out.

Every field is documented in README.md ("Job file"). Unknown fields are errors; so is a field of the wrong type
or out of range, a key given twice, and a NUL byte in a command, path or environment value. Errors are
:class:`~mnp.errors.SpecError` naming the field by its dotted path, e.g. ``node_ranges[1].target_nodes``.
:func:`load_spec` also reads AWS Batch job definitions (JSON with ``nodeProperties``), through
:mod:`mnp.spec.batchdef`.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from mnp.errors import SpecError
from mnp.spec.batchdef import is_batch_jobdef, load_batch_jobdef
from mnp.spec.decode import YAML, convert, printable
from mnp.spec.depends import parse_dependency
from mnp.spec.jobspec import CHOICES, ENV_NAME, JobSpec, NodeRangeSpec, safe_name
from mnp.spec.noderange import NodeRange
from mnp.spec.processes import check_processes
from mnp.spec.textfile import read_text

__all__ = ["JobSpec", "NodeRangeSpec", "load_spec", "parse_size", "parse_yaml", "spec_from_dict", "spec_from_text"]

_SIZE = re.compile(r"\s*([0-9]{1,15}(?:\.[0-9]{1,9})?)\s*([KMGT]i?)?B?\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
          "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE = "tag:yaml.org,2002:merge"


def parse_size(value: str | int) -> int:
    """``512Mi`` -> bytes. Bare numbers are bytes; ``K/M/G/T`` are powers of 1000, ``Ki/Mi/Gi/Ti`` of 1024."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError("expected a size such as 512Mi")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be positive")
        return value
    m = _SIZE.fullmatch(value)
    if not m:
        raise ValueError(f"{printable(repr(value))} is not a size (use e.g. 512Mi, 2Gi or a number of bytes)")
    n = float(m.group(1)) * _UNITS[(m.group(2) or "").lower()]
    if n < 1:
        raise ValueError("must be positive")
    return int(n)


_SHELL_OPERATORS = "|&;<>"  # unquoted in a string command: shell syntax (pipes, lists, redirections)
_SHELL_WORDS = ("|", "||", "&&")  # a bare list word that can only mean a pipeline or a list


def _shell_syntax(text: str) -> str | None:
    """The first shell operator outside quotes and backslash escapes in ``text`` (``'|'``), or None."""
    quote = ""
    escaped = False
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif c == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in _SHELL_OPERATORS:
            rest = text[i:]
            return rest[:len(rest) - len(rest.lstrip(_SHELL_OPERATORS))]  # the whole operator: '&&', '>>'
    return None


def _no_shell(words: list[str], text: str) -> None:
    """mnp runs a command without a shell, so ``a | b`` would hand ``|`` to ``a`` as an argument: refuse it with
    the way to say it (``["sh", "-c", ...]``)."""
    op = _shell_syntax(text) if text else next((w for w in words if w in _SHELL_WORDS), None)
    if op is not None:
        script = printable(text or " ".join(words))
        raise ValueError(f"{op!r} is shell syntax, and mnp runs the command without a shell; "
                         f'write ["sh", "-c", {json.dumps(script)}]')


def _command(value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            words = shlex.split(value)
        except ValueError as e:
            raise ValueError(f"cannot split command: {e}") from None
    elif isinstance(value, list) and all(isinstance(w, (str, int, float)) for w in value):
        words = [str(w) for w in value]
    else:
        raise TypeError("must be a string or a list of strings")
    if not words:
        raise ValueError("must not be empty")
    if any("\0" in w for w in words):
        raise ValueError("must not contain a NUL byte")
    _no_shell(words, value if isinstance(value, str) else "")
    return words


def _env(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TypeError("must be a map of NAME: value")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or not re.match(ENV_NAME, k):
            raise ValueError(f"{printable(repr(k))} is not a valid environment variable name")
        if isinstance(v, (dict, list)) or v is None or not isinstance(v, (str, int, float)):
            raise ValueError(f"value of {k} must be a string or a number")
        text = str(v).lower() if isinstance(v, bool) else str(v)
        if "\0" in text:
            raise _At(k, "must not contain a NUL byte")
        out[k] = text
    return out


def _node_range(v: Any) -> NodeRange:
    if not isinstance(v, (str, int)) or isinstance(v, bool):
        raise TypeError("must be a string such as '0:', ':2', '1:3' or '0'")
    return NodeRange.parse(v)


def _dec_hook(kind: type, value: Any) -> Any:
    if kind is NodeRange:
        return _node_range(value)
    raise NotImplementedError(kind)


class _At(ValueError):
    """A problem with one entry of a field (``env.NAME``)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key


class _FieldError(Exception):
    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem


def _normalise(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Coerce the fields that take more than one spelling (command, env, shm_size) before type checks."""
    out = dict(data)
    for key, fix in (("command", _command), ("env", _env), ("shm_size", parse_size)):
        if out.get(key) is not None:
            try:
                out[key] = fix(out[key])
            except _At as e:
                raise _FieldError(f"{where}{key}.{e.key}", str(e)) from None
            except (TypeError, ValueError) as e:
                raise _FieldError(f"{where}{key}", str(e)) from None
    if isinstance(out.get("workdir"), str) and "\0" in out["workdir"]:
        raise _FieldError(f"{where}workdir", "must not contain a NUL byte")
    if isinstance(out.get("processes"), list):  # each process's command and env, and its health check's command
        out["processes"] = [_normalise(p, f"{where}processes[{i}].") if isinstance(p, dict) else p
                            for i, p in enumerate(out["processes"])]
    if isinstance(out.get("health"), dict):
        out["health"] = _normalise(out["health"], f"{where}health.")
    return out


def spec_from_dict(data: Any, source: str | None = None, default_name: str | None = None) -> JobSpec:
    """Validate a job given as a dict (a parsed job file). Raises SpecError naming the field at fault."""
    if not isinstance(data, dict):
        raise SpecError("", "a job file must be a YAML map of fields", source)
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise SpecError(printable(str(bad[0])), "field names must be strings", source)
    if "name" not in data and default_name:
        data = {**data, "name": safe_name(default_name)}
    try:
        data = _normalise(data, "")
        if isinstance(data.get("node_ranges"), list):
            data["node_ranges"] = [_normalise(r, f"node_ranges[{i}].") if isinstance(r, dict) else r
                                   for i, r in enumerate(data["node_ranges"])]
    except _FieldError as e:
        raise SpecError(e.field, e.problem, source) from None
    spec = convert(data, JobSpec, source=source, words=YAML, dec_hook=_dec_hook, choices=CHOICES)
    for i, dep in enumerate(spec.depends_on):
        try:
            parse_dependency(dep)
        except ValueError as e:
            raise SpecError(f"depends_on[{i}]", str(e), source) from None
    if spec.command is None and not any(r.command for r in spec.node_ranges) \
            and not spec.processes and not any(r.processes for r in spec.node_ranges):
        raise SpecError("command", "a job needs a command (at the top level or in node_ranges) or processes",
                        source)
    check_processes(spec.processes, spec.ranks_depend_on,
                    [(r.processes, r.ranks_depend_on) for r in spec.node_ranges], source)
    return spec


def _key_path(path: str, key: str) -> str:
    key = printable(key)
    return f"{path}.{key}" if path else key


def _no_duplicate_keys(root: yaml.Node, source: str) -> None:
    """Refuse a mapping that gives a key twice (YAML would silently keep the last), naming the key's path."""
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:  # an alias: already checked (and may be recursive)
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE:
                    stack.append((value, path))
                    continue
                line = key.start_mark.line + 1
                where = _key_path(path, key.value)
                if (key.tag, key.value) in first:
                    before = first[(key.tag, key.value)]
                    lines = f"on line {line}" if before == line else f"(lines {before} and {line})"
                    raise SpecError(where, f"is given twice {lines}", source)
                first[(key.tag, key.value)] = line
                stack.append((value, where))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))


def parse_yaml(text: str, source: str) -> Any:
    """One YAML (or JSON) document -> Python data, refusing duplicate keys. Raises SpecError."""
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _no_duplicate_keys(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError("", f"{where}invalid YAML: {printable(problem)}", source) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as e:  # e.g. an integer of 5,000 digits
        why = str(e).split(";")[0].splitlines()[0] if str(e).strip() else type(e).__name__
        raise SpecError("", f"invalid YAML: {printable(why)}", source) from None
    finally:
        loader.dispose()


def load_spec(path: str | Path) -> JobSpec:
    """Read and validate a job file: mnp YAML, or an AWS Batch multi-node job definition (JSON). Raises
    :class:`SpecError` (exit 2) on any problem."""
    p = Path(path)
    try:
        text = read_text(p)
    except ValueError as e:
        raise SpecError("", f"cannot read job file: {e}", str(p)) from None
    return spec_from_text(text, str(p), p.stem)


def spec_from_text(text: str, source: str, default_name: str) -> JobSpec:
    """Validate a job file's text (a file's, or what came on stdin): mnp YAML or a Batch job definition."""
    data = parse_yaml(text, source)
    if is_batch_jobdef(data):  # an AWS Batch job definition, taken unchanged
        return load_batch_jobdef(data, source, default_name=default_name)
    return spec_from_dict(data, source, default_name=default_name)
