"""msgspec decoding with errors in the words of the file being read.

:func:`convert` runs :func:`msgspec.convert` and turns its ``ValidationError`` (``Expected `int` >= 1 - at
`$.nodes```) into a :class:`~mnp.errors.SpecError` naming the field by its dotted path and saying what is wrong
in the file's own vocabulary (:data:`YAML` speaks of lists and maps, :data:`JSON` of arrays and objects), with the
value found when there is one: ``nodes: must be at least 1, got 0``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgspec

from mnp.errors import SpecError

__all__ = ["JSON", "YAML", "convert", "explain", "kind", "no_nul", "printable"]

T = TypeVar("T")

YAML: Mapping[str, str] = {"int": "an integer", "str": "a string", "float": "a number", "bool": "true or false",
                           "array": "a list", "object": "a map", "null": "empty"}
JSON: Mapping[str, str] = {"int": "an integer", "str": "a string", "float": "a number", "bool": "a boolean",
                           "array": "an array", "object": "an object", "null": "null"}

_AT = re.compile(r"^(.*?)(?: - at (?:`key` in )?`\$(.*)`)?$", re.DOTALL)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_OPS = {">=": "at least", ">": "more than", "<=": "at most", "<": "less than"}


def kind(value: Any, words: Mapping[str, str]) -> str:
    """How a value is named in a message: ``a string``, ``a list``... and a float as itself (``2.5``)."""
    if value is None:
        return words["null"]
    if isinstance(value, float):
        return repr(value)
    for t, name in ((bool, "bool"), (int, "int"), (str, "str"), (list, "array"), (tuple, "array"),
                    (dict, "object")):
        if isinstance(value, t):
            return "a number" if name == "int" and words is JSON else words[name]
    return type(value).__name__


def printable(text: str) -> str:
    """``text`` fit for a one-line message: characters that are not printable (newlines, NULs...) escaped."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def no_nul(value: str, field: str, source: str | None) -> str:
    """``value``, or SpecError when it holds a NUL byte (no command word, path or environment value can)."""
    if "\0" in value:
        raise SpecError(field, "must not contain a NUL byte", source)
    return value


def _lookup(data: Any, steps: list[str | int]) -> tuple[bool, Any]:
    for step in steps:
        try:
            data = data[step]
        except (KeyError, IndexError, TypeError):
            return False, None
    return True, data


def _number(text: str) -> str:
    return text.removesuffix(".0")


def _explain(problem: str, field: str, value: tuple[bool, Any], words: Mapping[str, str],
             choices: Mapping[str, tuple[str, ...]]) -> str:
    found, v = value
    got = f", got {kind(v, words) if not isinstance(v, (int, float)) or isinstance(v, bool) else v!r}" \
        if found else ""
    if m := re.fullmatch(r"Expected `(\w+)(?: \| null)?` (>=|>|<=|<) (\S+)", problem):
        return f"must be {_OPS[m.group(2)]} {_number(m.group(3))}{got}"
    if m := re.fullmatch(r"Expected `(\w+)(?: \| null)?` of length (>=|<=) (\d+)", problem):
        size = len(v) if found and isinstance(v, (str, list, dict)) else None
        unit = "characters" if m.group(1) == "str" else "entries"
        limit = m.group(3)
        if m.group(2) == ">=":
            return "must not be empty" if limit == "1" else f"must have at least {limit} {unit}"
        if size is None:
            return f"must have at most {limit} {unit}"
        return f"{'is' if unit == 'characters' else 'has'} {size} {unit}{' long' if unit == 'characters' else ''}" \
            f"; at most {limit} allowed"
    if m := re.fullmatch(r"Expected `([\w |]+)`, got `(\w+)`", problem):
        wants = [words.get(w, w) for w in m.group(1).split(" | ") if w != "null"]
        what = kind(v, words) if found else words.get(m.group(2), m.group(2))
        return f"must be {' or '.join(wants)}, got {what}"
    if m := re.fullmatch(r"Expected `str` matching regex '(.*)'", problem, re.DOTALL):
        shown = f"{v!r} " if found and isinstance(v, str) and len(v) <= 80 else ""
        pattern = m.group(1).replace("\\\\", "\\")  # msgspec shows the pattern's repr
        pattern = "^" + pattern.removeprefix("\\A").removeprefix("^").removesuffix("\\Z").removesuffix("$") + "$"
        return f"{shown}does not match {pattern}"
    if problem.startswith("Invalid enum value"):
        allowed = choices.get(field.rsplit(".", 1)[-1], ())
        bad = problem.split(" ", 3)[-1]
        return f"{bad} is not one of " + ", ".join(f"'{c}'" for c in allowed) if allowed else f"{bad} is not allowed"
    return problem


def convert(data: Any, kind_: type[T], *, source: str | None, words: Mapping[str, str] = YAML,
            dec_hook: Callable[[type, Any], Any] | None = None,
            choices: Mapping[str, tuple[str, ...]] | None = None) -> T:
    """``msgspec.convert(data, kind_)``, raising SpecError with the dotted path of the first field at fault."""
    try:
        return msgspec.convert(data, kind_, dec_hook=dec_hook)
    except msgspec.ValidationError as e:
        field, problem = explain(e, data, words, choices or {})
        raise SpecError(printable(field), printable(problem), source) from None


def explain(e: msgspec.ValidationError, data: Any, words: Mapping[str, str] = YAML,
            choices: Mapping[str, tuple[str, ...]] | None = None) -> tuple[str, str]:
    """(dotted field path, problem) for a ValidationError raised while converting ``data``."""
    text = str(e)
    m = _AT.match(text)
    problem, raw = (m.group(1), m.group(2) or "") if m else (text, "")
    steps: list[str | int] = []
    for name, index in _STEP.findall(raw):
        if name:
            steps.append(name)
        elif index != "...":
            steps.append(int(index))
        else:
            break  # a map's value: msgspec does not say which key
    field = raw.lstrip(".").replace("[...]", "")
    if " - at `key` in " in text:
        return field, "keys must be strings"
    if um := re.fullmatch(r"Object contains unknown field `(.*)`", problem, re.DOTALL):
        return (f"{field}.{um.group(1)}" if field else um.group(1)), "unknown field"
    if mm := re.fullmatch(r"Object missing required field `(.*)`", problem, re.DOTALL):
        return (f"{field}.{mm.group(1)}" if field else mm.group(1)), "required field is missing"
    value = _lookup(data, steps) if "[...]" not in raw else (False, None)
    return field, _explain(problem, field, value, words, choices or {})
