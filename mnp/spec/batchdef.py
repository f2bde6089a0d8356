"""AWS Batch multi-node job definitions, read unchanged, as mnp jobs.

:func:`load_batch_jobdef` takes the JSON given to ``aws batch register-job-definition`` (or one entry of
``describe-job-definitions``) and returns the dict :func:`mnp.spec.model.spec_from_dict` accepts, plus the job's
:class:`RetryStrategy`. The mapping:

=====================================================================  ===========================================
Batch                                                                  mnp job
=====================================================================  ===========================================
``jobDefinitionName`` (made to fit mnp's name pattern)                 ``name`` (left out when absent)
``nodeProperties.numNodes``                                            ``nodes``
``nodeProperties.mainNode``                                            ``main_node``
``nodeProperties.nodeRangeProperties[i]``: ``targetNodes``,            ``node_ranges[i]``: ``target_nodes``,
``container.command`` (``Ref::name`` filled from ``parameters``),      ``command``,
``container.environment``                                              ``env``
the largest ``container.linuxParameters.sharedMemorySize`` (MiB)       ``shm_size`` (``"<N>Mi"``)
``timeout.attemptDurationSeconds``                                     ``timeout``
``retryStrategy``                                                      returned apart, as :class:`RetryStrategy`
=====================================================================  ===========================================

Keys Batch defines but mnp has no use for (the image, vCPUs, memory, devices, ulimits, roles, tags, log
configuration...) are accepted and ignored; any other key is an error naming its path. Errors are
:class:`~mnp.errors.SpecError` with Batch's own field path, e.g. ``nodeProperties.nodeRangeProperties[1].targetNodes``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mnp.errors import SpecError
from mnp.spec.noderange import NodeRange
from mnp.plan import resolve_nodes
from mnp.spec.model import spec_from_dict

__all__ = ["RetryRule", "RetryStrategy", "is_batch_jobdef", "load_batch_jobdef"]

# Keys Batch defines that mnp accepts and ignores, by the object they belong to.
_IGNORED_TOP = frozenset({
    "parameters", "schedulingPriority", "containerProperties", "propagateTags", "tags", "platformCapabilities",
    "eksProperties", "ecsProperties", "consumableResourceProperties",
    # describe-job-definitions adds these
    "jobDefinitionArn", "revision", "status", "containerOrchestrationType",
})
_USED_TOP = frozenset({"jobDefinitionName", "type", "nodeProperties", "retryStrategy", "timeout"})
_IGNORED_RANGE = frozenset({"instanceTypes", "consumableResourceProperties"})
_UNSUPPORTED_RANGE = frozenset({"ecsProperties", "eksProperties"})
_IGNORED_CONTAINER = frozenset({
    "image", "vcpus", "memory", "jobRoleArn", "executionRoleArn", "volumes", "mountPoints",
    "readonlyRootFilesystem", "privileged", "ulimits", "user", "instanceType", "resourceRequirements",
    "logConfiguration", "secrets", "networkConfiguration", "fargatePlatformConfiguration", "ephemeralStorage",
    "runtimePlatform", "repositoryCredentials", "enableExecuteCommand",
})
_IGNORED_LINUX = frozenset({"devices", "initProcessEnabled", "tmpfs", "maxSwap", "swappiness"})

_MIN_TIMEOUT = 60  # Batch's minimum attemptDurationSeconds
_MAX_RULES = 5
_MAX_PATTERN = 512
_EXIT_PATTERN = re.compile(r"^[0-9]*\*?$")
_REASON_PATTERN = re.compile(r"^[A-Za-z0-9.:\s]*\*?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REF = re.compile(r"^Ref::(.+)$")


@dataclass(frozen=True)
class RetryRule:
    """One ``evaluateOnExit`` entry. ``None`` conditions are not checked; patterns may end in ``*``."""

    action: Literal["RETRY", "EXIT"]
    on_exit_code: str | None = None
    on_reason: str | None = None
    on_status_reason: str | None = None

    def matches(self, exit_code: int, reason: str) -> bool:
        """All given conditions hold. ``reason`` is matched by both ``onReason`` and ``onStatusReason``."""
        return (_glob(self.on_exit_code, str(exit_code)) and _glob(self.on_reason, reason)
                and _glob(self.on_status_reason, reason))


def _glob(pattern: str | None, value: str) -> bool:
    if pattern is None:
        return True
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


@dataclass(frozen=True)
class RetryStrategy:
    """Batch's ``retryStrategy``: at most ``attempts`` attempts in all; ``rules`` decide which failures retry."""

    attempts: int = 1
    rules: tuple[RetryRule, ...] = ()

    def should_retry(self, exit_code: int, reason: str, attempt: int) -> bool:
        """Whether attempt number ``attempt`` (1-based), which ended with ``exit_code`` and ``reason``, is retried.

        Batch's rules: a successful attempt (exit code 0) is never retried, nor the last allowed attempt; else the
        first rule whose conditions all match decides (``RETRY`` or ``EXIT``), and when none matches, the job is
        retried. Patterns match exactly (case included), or by prefix when they end in ``*``; mnp has one reason
        string per attempt, which both ``onReason`` and ``onStatusReason`` are matched against.
        """
        if exit_code == 0 or attempt >= self.attempts:
            return False
        for rule in self.rules:
            if rule.matches(exit_code, reason):
                return rule.action == "RETRY"
        return True


def is_batch_jobdef(data: Any) -> bool:
    """Whether ``data`` (a parsed JSON or YAML document) is a Batch job definition rather than an mnp job."""
    return isinstance(data, dict) and "nodeProperties" in data


class _Reader:
    """Validation helpers that raise SpecError with the path of the field at fault."""

    def __init__(self, source: str | None) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> SpecError:
        return SpecError(path, problem, self.source)

    def obj(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"must be an object, got {_kind(value)}")
        return value

    def keys(self, obj: dict[str, Any], path: str, known: frozenset[str]) -> None:
        for key in obj:
            if key not in known:
                raise self.fail(_join(path, str(key)), "unknown field")

    def integer(self, value: Any, path: str, low: int, high: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"must be an integer, got {_kind(value)}")
        if value < low or (high is not None and value > high):
            limits = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise self.fail(path, f"must be {limits}, got {value}")
        return value

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string, got {_kind(value)}")
        return value

    def array(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(path, f"must be an array, got {_kind(value)}")
        return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _name(raw: str) -> str:
    """Fit a job definition name to mnp's ``^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", raw)
    safe = re.sub(r"^[^A-Za-z0-9]+", "", safe)[:128]
    return safe or "job"


def _retry(r: _Reader, value: Any) -> RetryStrategy:
    path = "retryStrategy"
    obj = r.obj(value, path)
    r.keys(obj, path, frozenset({"attempts", "evaluateOnExit"}))
    rules_raw = obj.get("evaluateOnExit")
    if "attempts" not in obj:
        if rules_raw:
            raise r.fail(f"{path}.attempts", "is required when evaluateOnExit is given")
        attempts = 1
    else:
        attempts = r.integer(obj["attempts"], f"{path}.attempts", 1, 10)
    rules: list[RetryRule] = []
    if rules_raw is not None:
        rules_raw = r.array(rules_raw, f"{path}.evaluateOnExit")
        if len(rules_raw) > _MAX_RULES:
            raise r.fail(f"{path}.evaluateOnExit", f"has {len(rules_raw)} entries; Batch allows at most {_MAX_RULES}")
        for i, raw in enumerate(rules_raw):
            rules.append(_rule(r, raw, f"{path}.evaluateOnExit[{i}]"))
    return RetryStrategy(attempts, tuple(rules))


def _rule(r: _Reader, value: Any, path: str) -> RetryRule:
    obj = r.obj(value, path)
    r.keys(obj, path, frozenset({"action", "onExitCode", "onReason", "onStatusReason"}))
    if "action" not in obj:
        raise r.fail(f"{path}.action", "required field is missing")
    action = r.string(obj["action"], f"{path}.action").upper()
    if action not in ("RETRY", "EXIT"):
        raise r.fail(f"{path}.action", f"must be RETRY or EXIT, got {obj['action']!r}")
    patterns: dict[str, str | None] = {}
    for key, allowed, hint in (("onExitCode", _EXIT_PATTERN, "digits"),
                               ("onReason", _REASON_PATTERN, "letters, digits, '.', ':' and white space"),
                               ("onStatusReason", _REASON_PATTERN, "letters, digits, '.', ':' and white space")):
        if key not in obj:
            patterns[key] = None
            continue
        pattern = r.string(obj[key], f"{path}.{key}")
        if not pattern:
            raise r.fail(f"{path}.{key}", "must not be empty (leave it out to match anything)")
        if len(pattern) > _MAX_PATTERN:
            raise r.fail(f"{path}.{key}", f"is {len(pattern)} characters long; Batch allows at most {_MAX_PATTERN}")
        if not allowed.match(pattern):
            raise r.fail(f"{path}.{key}", f"{pattern!r} may hold only {hint}, optionally ending in '*'")
        patterns[key] = pattern
    return RetryRule("RETRY" if action == "RETRY" else "EXIT", patterns["onExitCode"], patterns["onReason"],
                     patterns["onStatusReason"])


def _parameters(r: _Reader, value: Any, path: str) -> dict[str, str]:
    obj = r.obj(value, path)
    for k, v in obj.items():
        r.string(v, _join(path, str(k)))
    return dict(obj)


def _command(r: _Reader, value: Any, path: str, params: Mapping[str, str]) -> list[str]:
    words = r.array(value, path)
    if not words:
        raise r.fail(path, "must not be empty")
    out = []
    for i, w in enumerate(words):
        w = r.string(w, f"{path}[{i}]")
        m = _REF.match(w)
        out.append(params.get(m.group(1), w) if m else w)
    return out


def _environment(r: _Reader, value: Any, path: str) -> dict[str, str]:
    items = r.array(value, path)
    env: dict[str, str] = {}
    where: dict[str, int] = {}
    for i, raw in enumerate(items):
        p = f"{path}[{i}]"
        obj = r.obj(raw, p)
        r.keys(obj, p, frozenset({"name", "value"}))
        if "name" not in obj:
            raise r.fail(f"{p}.name", "required field is missing")
        name = r.string(obj["name"], f"{p}.name")
        if not _ENV_NAME.match(name):
            raise r.fail(f"{p}.name", f"{name!r} is not a valid environment variable name")
        if name.startswith("AWS_BATCH"):
            raise r.fail(f"{p}.name", f"{name!r}: names starting with AWS_BATCH are reserved for Batch")
        if name in where:
            raise r.fail(f"{p}.name", f"{name!r} is already set by {path}[{where[name]}]")
        env[name] = r.string(obj.get("value", ""), f"{p}.value")
        where[name] = i
    return env


def _container(r: _Reader, value: Any, path: str, params: Mapping[str, str]) -> tuple[dict[str, Any], int | None]:
    """One range's container -> (node_ranges entry fields, sharedMemorySize in MiB or None)."""
    obj = r.obj(value, path)
    r.keys(obj, path, _IGNORED_CONTAINER | {"command", "environment", "linuxParameters"})
    if "command" not in obj:
        raise r.fail(f"{path}.command", "required field is missing: mnp runs the command itself and cannot fall "
                      "back to the image's CMD")
    out: dict[str, Any] = {"command": _command(r, obj["command"], f"{path}.command", params)}
    if "environment" in obj:
        out["env"] = _environment(r, obj["environment"], f"{path}.environment")
    shm: int | None = None
    if "linuxParameters" in obj:
        lp_path = f"{path}.linuxParameters"
        lp = r.obj(obj["linuxParameters"], lp_path)
        r.keys(lp, lp_path, _IGNORED_LINUX | {"sharedMemorySize"})
        if "sharedMemorySize" in lp:
            shm = r.integer(lp["sharedMemorySize"], f"{lp_path}.sharedMemorySize", 1)
    return out, shm


def load_batch_jobdef(data: dict[str, Any], source: str, *,
                      parameters: Mapping[str, str] | None = None) -> tuple[dict[str, Any], RetryStrategy | None]:
    """Turn a Batch multi-node job definition into an mnp job dict and its retry strategy (``None`` if unset).

    A command word that is exactly ``Ref::name`` is replaced by ``parameters[name]`` (submit-time values, as
    ``aws batch submit-job --parameters`` gives) or else by the job definition's ``parameters`` default; a
    reference with neither is left as it is. Besides the per-field checks, the translated job is validated as mnp
    will run it (node limits, ranges covering every node and nesting rather than overlapping), and those problems
    too are reported under the Batch field. Raises :class:`~mnp.errors.SpecError` naming the Batch field at fault.
    """
    r = _Reader(source)
    top = r.obj(data, "")
    r.keys(top, "", _USED_TOP | _IGNORED_TOP)
    if "type" in top and top["type"] != "multinode":
        raise r.fail("type", f"must be 'multinode' for a multi-node job, got {top['type']!r}")
    if "nodeProperties" not in top:
        raise r.fail("nodeProperties", "required field is missing (mnp runs multi-node job definitions only)")

    job: dict[str, Any] = {}
    if "jobDefinitionName" in top:
        job["name"] = _name(r.string(top["jobDefinitionName"], "jobDefinitionName"))

    params = _parameters(r, top["parameters"], "parameters") if "parameters" in top else {}
    params = {**params, **(parameters or {})}

    np_path = "nodeProperties"
    props = r.obj(top["nodeProperties"], np_path)
    r.keys(props, np_path, frozenset({"numNodes", "mainNode", "nodeRangeProperties"}))
    for key in ("numNodes", "mainNode", "nodeRangeProperties"):
        if key not in props:
            raise r.fail(f"{np_path}.{key}", "required field is missing")
    nodes = r.integer(props["numNodes"], f"{np_path}.numNodes", 1)
    main = r.integer(props["mainNode"], f"{np_path}.mainNode", 0)
    if main >= nodes:
        raise r.fail(f"{np_path}.mainNode", f"is {main}, but numNodes is {nodes} (nodes 0..{nodes - 1})")
    job["nodes"] = nodes
    job["main_node"] = main

    ranges_path = f"{np_path}.nodeRangeProperties"
    ranges_raw = r.array(props["nodeRangeProperties"], ranges_path)
    if not ranges_raw:
        raise r.fail(ranges_path, "must list at least one node range")
    ranges: list[dict[str, Any]] = []
    shm_sizes: list[int] = []
    for i, raw in enumerate(ranges_raw):
        p = f"{ranges_path}[{i}]"
        obj = r.obj(raw, p)
        r.keys(obj, p, _IGNORED_RANGE | _UNSUPPORTED_RANGE | {"targetNodes", "container"})
        for key in sorted(_UNSUPPORTED_RANGE & obj.keys()):
            raise r.fail(f"{p}.{key}", "is not supported by mnp; describe the range with 'container'")
        if "targetNodes" not in obj:
            raise r.fail(f"{p}.targetNodes", "required field is missing")
        target = obj["targetNodes"]
        if not isinstance(target, str):
            raise r.fail(f"{p}.targetNodes", f"must be a string such as '0:', ':2', '1:3' or '0', got {_kind(target)}")
        try:
            NodeRange.parse(target).indices(nodes)
        except ValueError as e:
            raise r.fail(f"{p}.targetNodes", str(e)) from None
        if "container" not in obj:
            raise r.fail(f"{p}.container", "required field is missing")
        fields, shm = _container(r, obj["container"], f"{p}.container", params)
        ranges.append({"target_nodes": target.strip(), **fields})
        if shm is not None:
            shm_sizes.append(shm)
    job["node_ranges"] = ranges
    if shm_sizes:
        job["shm_size"] = f"{max(shm_sizes)}Mi"

    if "timeout" in top:
        t = r.obj(top["timeout"], "timeout")
        r.keys(t, "timeout", frozenset({"attemptDurationSeconds"}))
        if "attemptDurationSeconds" in t:
            job["timeout"] = r.integer(t["attemptDurationSeconds"], "timeout.attemptDurationSeconds", _MIN_TIMEOUT)

    retry = _retry(r, top["retryStrategy"]) if "retryStrategy" in top else None
    _check(job, source)
    return job, retry


_BACK = [  # mnp field path -> the Batch field it came from
    (re.compile(r"^node_ranges\[(\d+)\]\.target_nodes$"), r"nodeProperties.nodeRangeProperties[\1].targetNodes"),
    (re.compile(r"^node_ranges\[(\d+)\]\.command"), r"nodeProperties.nodeRangeProperties[\1].container.command"),
    (re.compile(r"^node_ranges\[(\d+)\]\.env"), r"nodeProperties.nodeRangeProperties[\1].container.environment"),
    (re.compile(r"^node_ranges\[(\d+)\]"), r"nodeProperties.nodeRangeProperties[\1]"),
    (re.compile(r"^node_ranges$"), "nodeProperties.nodeRangeProperties"),
    (re.compile(r"^nodes$"), "nodeProperties.numNodes"),
    (re.compile(r"^main_node$"), "nodeProperties.mainNode"),
    (re.compile(r"^name$"), "jobDefinitionName"),
    (re.compile(r"^timeout$"), "timeout.attemptDurationSeconds"),
]


def _check(job: dict[str, Any], source: str | None) -> None:
    """Validate the translated job as mnp will (node ranges cover every node, nest rather than overlap...), and
    report a problem under the Batch field it came from."""
    try:
        resolve_nodes(spec_from_dict(job, source), source)
    except SpecError as e:
        field = e.field
        for pattern, batch in _BACK:
            if pattern.search(field):
                field = pattern.sub(batch, field, count=1)
                break
        problem = re.sub(r"\bnode_ranges\[(\d+)\]", r"nodeRangeProperties[\1]", e.problem)
        raise SpecError(field, problem, source) from None
