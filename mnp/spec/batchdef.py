"""AWS Batch multi-node job definitions, read unchanged, as mnp jobs.

:func:`load_batch_jobdef` takes the JSON given to ``aws batch register-job-definition`` (or one entry of
``describe-job-definitions``) and returns the :class:`~mnp.spec.jobspec.JobSpec` mnp runs. The mapping:

=====================================================================  ===========================================
Batch                                                                  mnp job
=====================================================================  ===========================================
``jobDefinitionName`` (made to fit mnp's name pattern)                 ``name`` (else the file's name)
``nodeProperties.numNodes``                                            ``nodes``
``nodeProperties.mainNode``                                            ``main_node``
``nodeProperties.nodeRangeProperties[i]``: ``targetNodes``,            ``node_ranges[i]``: ``target_nodes``,
``container.command`` (``Ref::name`` filled from ``parameters``),      ``command``,
``container.environment``                                              ``env``
the largest ``container.linuxParameters.sharedMemorySize`` (MiB)       ``shm_size``
``timeout.attemptDurationSeconds``                                     ``timeout``
``retryStrategy``                                                      ``retry``
=====================================================================  ===========================================

The document is decoded into the structs below (msgspec: camelCase names, unknown keys refused); keys Batch
defines but mnp has no use for (the image, vCPUs, memory, devices, ulimits, roles, tags, log configuration...) are
fields typed ``Any`` that nothing reads. What types cannot say (names, patterns, node-range layout) is checked
after, in Batch's terms. Errors are :class:`~mnp.errors.SpecError` with Batch's own field path, e.g.
``nodeProperties.nodeRangeProperties[1].targetNodes``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from mnp.errors import SpecError
from mnp.spec.batchtasks import BatchStruct as _Struct
from mnp.spec.batchtasks import EcsProperties as _EcsProperties
from mnp.spec.batchtasks import EnvVar as _EnvVar
from mnp.spec.batchtasks import command as _command
from mnp.spec.batchtasks import environment as _environment
from mnp.spec.batchtasks import task_processes
from mnp.spec.decode import JSON, convert, kind, no_nul
from mnp.spec.jobspec import MAX_NODES, MAX_RANGES, MAX_SHM, MAX_TIMEOUT, JobSpec, NodeRangeSpec, safe_name
from mnp.spec.noderange import NodeRange
from mnp.spec.resolve import FieldNames, range_owners
from mnp.spec.retry import MAX_ATTEMPTS, MAX_PATTERN, MAX_RULES, RetryRule, RetryStrategy

__all__ = ["RetryRule", "RetryStrategy", "is_batch_jobdef", "load_batch_jobdef"]

_MIN_TIMEOUT = 60  # Batch's minimum attemptDurationSeconds
_EXIT_PATTERN = re.compile(r"[0-9]*\*?")
_REASON_PATTERN = re.compile(r"[A-Za-z0-9.:\s]*\*?")
_REF = re.compile(r"Ref::(.+)", re.DOTALL)
_RANGES = "nodeProperties.nodeRangeProperties"
BATCH_NAMES = FieldNames(ranges=_RANGES, target="targetNodes", command="container.command",
                         main_node="nodeProperties.mainNode")
_HINTS = {"nodeProperties": " (mnp runs multi-node job definitions only)",
          "command": ": mnp runs the command itself and cannot fall back to the image's CMD"}


class _LinuxParameters(_Struct):
    shared_memory_size: Annotated[int, msgspec.Meta(ge=1, le=MAX_SHM >> 20)] | None = None
    devices: Any = None  # accepted and ignored, as below
    init_process_enabled: Any = None
    tmpfs: Any = None
    max_swap: Any = None
    swappiness: Any = None


class _Container(_Struct):
    command: Annotated[list[str], msgspec.Meta(min_length=1)]
    environment: list[_EnvVar] = []
    linux_parameters: _LinuxParameters | None = None
    image: Any = None
    vcpus: Any = None
    memory: Any = None
    job_role_arn: Any = None
    execution_role_arn: Any = None
    volumes: Any = None
    mount_points: Any = None
    readonly_root_filesystem: Any = None
    privileged: Any = None
    ulimits: Any = None
    user: Any = None
    instance_type: Any = None
    resource_requirements: Any = None
    log_configuration: Any = None
    secrets: Any = None
    network_configuration: Any = None
    fargate_platform_configuration: Any = None
    ephemeral_storage: Any = None
    runtime_platform: Any = None
    repository_credentials: Any = None
    enable_execute_command: Any = None


class _NodeRange(_Struct):
    target_nodes: NodeRange
    container: _Container | None = None
    ecs_properties: _EcsProperties | None = None  # multi-container: processes (mnp.spec.batchtasks)
    instance_types: Any = None
    consumable_resource_properties: Any = None
    eks_properties: Any = msgspec.UNSET  # known to Batch, not supported by mnp


class _NodeProperties(_Struct):
    num_nodes: Annotated[int, msgspec.Meta(ge=1, le=MAX_NODES)]
    main_node: Annotated[int, msgspec.Meta(ge=0)]
    node_range_properties: Annotated[list[_NodeRange], msgspec.Meta(min_length=1, max_length=MAX_RANGES)]


class _Rule(_Struct):
    action: str
    on_exit_code: str | None = None
    on_reason: str | None = None
    on_status_reason: str | None = None


class _RetryStrategy(_Struct):
    attempts: Annotated[int, msgspec.Meta(ge=1, le=MAX_ATTEMPTS)] | None = None
    evaluate_on_exit: Annotated[list[_Rule], msgspec.Meta(max_length=MAX_RULES)] | None = None


class _Timeout(_Struct):
    attempt_duration_seconds: Annotated[int, msgspec.Meta(ge=_MIN_TIMEOUT, le=int(MAX_TIMEOUT))] | None = None


class _JobDefinition(_Struct):
    node_properties: _NodeProperties | None = None
    job_definition_name: str | None = None
    type: str | None = None
    parameters: dict[str, Any] = {}
    retry_strategy: _RetryStrategy | None = None
    timeout: _Timeout | None = None
    scheduling_priority: Any = None
    container_properties: Any = None
    propagate_tags: Any = None
    tags: Any = None
    platform_capabilities: Any = None
    eks_properties: Any = None
    ecs_properties: _EcsProperties | None = None
    consumable_resource_properties: Any = None
    job_definition_arn: Any = None  # describe-job-definitions adds these
    revision: Any = None
    status: Any = None
    container_orchestration_type: Any = None


def _dec_hook(kind_: type, value: Any) -> Any:
    if kind_ is NodeRange:
        if not isinstance(value, str):
            raise ValueError(f"must be a string such as '0:', ':2', '1:3' or '0', got {kind(value, JSON)}")
        return NodeRange.parse(value)
    raise NotImplementedError(kind_)


def is_batch_jobdef(data: Any) -> bool:
    """Whether ``data`` (a parsed JSON or YAML document) is a Batch job definition rather than an mnp job."""
    return isinstance(data, dict) and ("nodeProperties" in data or "ecsProperties" in data)


def _decode(data: Any, source: str | None) -> _JobDefinition:
    try:
        return convert(data, _JobDefinition, source=source, words=JSON, dec_hook=_dec_hook,
                       choices={"condition": ("START", "COMPLETE", "SUCCESS")})
    except SpecError as e:
        hint = _HINTS.get(e.field.rsplit(".", 1)[-1], "") if e.problem == "required field is missing" else ""
        if not hint:
            raise
        raise SpecError(e.field, e.problem + hint, source) from None


def _retry(raw: _RetryStrategy, source: str | None) -> RetryStrategy:
    path = "retryStrategy"
    if raw.attempts is None and raw.evaluate_on_exit:
        raise SpecError(f"{path}.attempts", "is required when evaluateOnExit is given", source)
    rules = []
    for i, r in enumerate(raw.evaluate_on_exit or ()):
        where = f"{path}.evaluateOnExit[{i}]"
        action = r.action.upper()
        if action not in ("RETRY", "EXIT"):
            raise SpecError(f"{where}.action", f"must be RETRY or EXIT, got {r.action!r}", source)
        for key, pattern, allowed, hint in (
                ("onExitCode", r.on_exit_code, _EXIT_PATTERN, "digits"),
                ("onReason", r.on_reason, _REASON_PATTERN, "letters, digits, '.', ':' and white space"),
                ("onStatusReason", r.on_status_reason, _REASON_PATTERN, "letters, digits, '.', ':' and white space")):
            if pattern is None:
                continue
            if not pattern:
                raise SpecError(f"{where}.{key}", "must not be empty (leave it out to match anything)", source)
            if len(pattern) > MAX_PATTERN:
                raise SpecError(f"{where}.{key}",
                                f"is {len(pattern)} characters long; Batch allows at most {MAX_PATTERN}", source)
            if not allowed.fullmatch(pattern):
                raise SpecError(f"{where}.{key}", f"{pattern!r} may hold only {hint}, optionally ending in '*'",
                                source)
        rules.append(RetryRule("RETRY" if action == "RETRY" else "EXIT", r.on_exit_code, r.on_reason,
                               r.on_status_reason))
    return RetryStrategy(raw.attempts or 1, tuple(rules))


def load_batch_jobdef(data: Any, source: str | None, *, parameters: Mapping[str, str] | None = None,
                      default_name: str | None = None) -> JobSpec:
    """Turn a Batch multi-node job definition into the mnp job it describes.

    A command word that is exactly ``Ref::name`` is replaced by ``parameters[name]`` (submit-time values, as
    ``aws batch submit-job --parameters`` gives) or else by the job definition's ``parameters`` default; a
    reference with neither is left as it is. The name is ``jobDefinitionName``, else ``default_name``, made to
    fit mnp's pattern. Besides the per-field checks, the node ranges are laid out on ``numNodes`` nodes as mnp
    will run them (covering every node, nesting rather than overlapping). Raises :class:`~mnp.errors.SpecError`
    naming the Batch field at fault.
    """
    jd = _decode(data, source)
    if jd.type is not None and jd.type != "multinode" and not (jd.node_properties is None and jd.type == "container"):
        raise SpecError("type", f"must be 'multinode' for a multi-node job, got {jd.type!r}", source)
    for key, value in jd.parameters.items():
        if not isinstance(value, str):
            raise SpecError(f"parameters.{key}", f"must be a string, got {kind(value, JSON)}", source)
        no_nul(value, f"parameters.{key}", source)
    params = {**jd.parameters, **(parameters or {})}
    props = jd.node_properties
    name = jd.job_definition_name if jd.job_definition_name is not None else default_name
    timeout = jd.timeout.attempt_duration_seconds if jd.timeout is not None else None
    common: dict[str, Any] = {
        "name": safe_name(name) if name is not None else "job",
        "timeout": float(timeout) if timeout is not None else None,
        "retry": _retry(jd.retry_strategy, source) if jd.retry_strategy is not None else None}
    if props is None:  # a single-node job of containers: ecsProperties at the top
        if jd.ecs_properties is None:
            raise SpecError("nodeProperties", "required field is missing" + _HINTS["nodeProperties"], source)
        procs = task_processes(jd.ecs_properties, "ecsProperties", params, source)
        return JobSpec(nodes=1, processes=procs, **common)
    if jd.ecs_properties is not None:
        raise SpecError("ecsProperties", "give the containers in nodeProperties.nodeRangeProperties[].ecsProperties "
                        "for a multi-node job", source)
    nodes, main = props.num_nodes, props.main_node
    if main >= nodes:
        raise SpecError("nodeProperties.mainNode", f"is {main}, but numNodes is {nodes} (nodes 0..{nodes - 1})",
                        source)
    ranges: list[NodeRangeSpec] = []
    shm_mib: list[int] = []
    for i, rng in enumerate(props.node_range_properties):
        p = f"{_RANGES}[{i}]"
        if rng.eks_properties is not msgspec.UNSET:
            raise SpecError(f"{p}.eksProperties", "is not supported by mnp; describe the range with 'container' "
                            "or 'ecsProperties'", source)
        c = rng.container
        if (c is None) == (rng.ecs_properties is None):
            raise SpecError(f"{p}.container", "give 'container' or 'ecsProperties' (several containers), not both"
                            if c is not None else "required field is missing (or give 'ecsProperties')", source)
        if rng.ecs_properties is not None:
            procs = task_processes(rng.ecs_properties, f"{p}.ecsProperties", params, source)
            ranges.append(NodeRangeSpec(rng.target_nodes, processes=procs))
            continue
        assert c is not None
        ranges.append(NodeRangeSpec(rng.target_nodes, _command(c.command, f"{p}.container.command", params, source),
                                    _environment(c.environment, f"{p}.container.environment", source)))
        if c.linux_parameters is not None and c.linux_parameters.shared_memory_size is not None:
            shm_mib.append(c.linux_parameters.shared_memory_size)
    spec = JobSpec(nodes=nodes, main_node=main, node_ranges=ranges,
                   shm_size=max(shm_mib) << 20 if shm_mib else None, **common)
    range_owners(spec, source, BATCH_NAMES)
    return spec
