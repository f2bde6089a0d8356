"""Batch multi-container jobs (``ecsProperties.taskProperties[].containers[]``) as mnp processes.

Each container becomes a :class:`~mnp.spec.processes.ProcessSpec`: ``name`` -> ``name``, ``command`` ->
``command`` (``Ref::name`` filled from the parameters), ``environment`` -> ``env``, ``essential`` (default true,
as in ECS) -> ``essential``, ``dependsOn[{containerName, condition}]`` -> ``depends_on[{name, condition}]``
(Batch's conditions: START, COMPLETE, SUCCESS; Batch has no health check, so no HEALTHY). The image and the other
container and task fields are accepted and ignored. Also the Batch helpers shared with :mod:`mnp.spec.batchdef`
(camelCase structs, environment lists, commands).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec

from mnp.errors import SpecError
from mnp.spec.decode import no_nul
from mnp.spec.jobspec import ENV_NAME
from mnp.spec.processes import PROCESS_NAME, Dependency, ProcessSpec, check_processes

__all__ = ["BatchStruct", "EcsProperties", "EnvVar", "command", "environment", "task_processes"]

_REF = re.compile(r"Ref::(.+)", re.DOTALL)


class BatchStruct(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """Batch's spelling (camelCase), no unknown keys."""


class EnvVar(BatchStruct):
    name: str
    value: str = ""


class _Dependency(BatchStruct):
    container_name: str
    condition: Literal["START", "COMPLETE", "SUCCESS"]


class _TaskContainer(BatchStruct):
    name: str
    command: Annotated[list[str], msgspec.Meta(min_length=1)]
    environment: list[EnvVar] = []
    essential: bool = True
    depends_on: list[_Dependency] = []
    image: Any = None  # accepted and ignored, as below
    linux_parameters: Any = None
    log_configuration: Any = None
    mount_points: Any = None
    privileged: Any = None
    readonly_root_filesystem: Any = None
    repository_credentials: Any = None
    resource_requirements: Any = None
    secrets: Any = None
    ulimits: Any = None
    user: Any = None
    firelens_configuration: Any = None


class _TaskProperties(BatchStruct):
    containers: Annotated[list[_TaskContainer], msgspec.Meta(min_length=1, max_length=10)]
    ephemeral_storage: Any = None
    execution_role_arn: Any = None
    platform_version: Any = None
    ipc_mode: Any = None
    task_role_arn: Any = None
    pid_mode: Any = None
    network_configuration: Any = None
    runtime_platform: Any = None
    volumes: Any = None
    enable_execute_command: Any = None


class EcsProperties(BatchStruct):
    task_properties: Annotated[list[_TaskProperties], msgspec.Meta(min_length=1, max_length=1)]


def environment(items: list[EnvVar], path: str, source: str | None) -> dict[str, str]:
    env: dict[str, str] = {}
    where: dict[str, int] = {}
    for i, var in enumerate(items):
        p = f"{path}[{i}]"
        if not re.match(ENV_NAME, var.name):
            raise SpecError(f"{p}.name", f"{var.name!r} is not a valid environment variable name", source)
        if var.name.startswith("AWS_BATCH"):
            raise SpecError(f"{p}.name", f"{var.name!r}: names starting with AWS_BATCH are reserved for Batch",
                            source)
        if var.name in where:
            raise SpecError(f"{p}.name", f"{var.name!r} is already set by {path}[{where[var.name]}]", source)
        env[var.name] = no_nul(var.value, f"{p}.value", source)
        where[var.name] = i
    return env


def command(words: list[str], path: str, params: Mapping[str, str], source: str | None) -> list[str]:
    out = []
    for i, w in enumerate(words):
        m = _REF.fullmatch(w)
        out.append(no_nul(params.get(m.group(1), w) if m else w, f"{path}[{i}]", source))
    return out


def _batch_field(field: str, base: str) -> str:
    """An mnp field path from :func:`check_processes` in Batch's words."""
    field = re.sub(r"^processes\[(\d+)\]", rf"{base}[\1]", field)
    field = field.replace(".depends_on", ".dependsOn")
    return re.sub(r"(dependsOn\[\d+\])\.name$", r"\1.containerName", field)


def task_processes(ecs: EcsProperties, path: str, params: Mapping[str, str], source: str | None) -> list[ProcessSpec]:
    """The processes one task's containers describe; errors name Batch's fields under ``path``."""
    base = f"{path}.taskProperties[0].containers"
    procs = []
    for j, c in enumerate(ecs.task_properties[0].containers):
        where = f"{base}[{j}]"
        if not re.match(PROCESS_NAME, c.name):
            raise SpecError(f"{where}.name", f"{c.name!r}: mnp needs a name of letters, digits, '-' and '_' that "
                            "starts with a letter (at most 63 characters)", source)
        procs.append(ProcessSpec(c.name, command(c.command, f"{where}.command", params, source),
                                 environment(c.environment, f"{where}.environment", source), c.essential,
                                 [Dependency(d.container_name, d.condition) for d in c.depends_on]))
    try:
        check_processes(procs, [], [], source)
    except SpecError as e:
        problem = e.problem.replace("the top level's processes", "this task's containers")
        raise SpecError(_batch_field(e.field, base), problem, source) from None
    return procs
