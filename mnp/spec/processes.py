"""Multi-process nodes: processes that run beside (or instead of) the MPI ranks -- ECS's containers of a task.

A job file's top level and each node range may list ``processes``; a node runs the top level's and those of the
innermost range around it. Each process has a ``name``, a ``command``, ``env``, ``essential`` (default true),
``depends_on`` (``[{name, condition}]``, conditions START, COMPLETE, SUCCESS, HEALTHY) and an optional ``health``
check (ECS's ``healthCheck``: interval 30 s, timeout 5 s, retries 3, start period 0). ``ranks_depend_on`` lists
the dependencies of the node's MPI ranks in the same form. :func:`check_processes` checks what the types cannot:
names unique and not clashing, dependencies that name a process the node runs, no cycles, HEALTHY only on a
process with a health check, COMPLETE/SUCCESS never on an essential process (ECS's rule: an essential process
ending ends the node's work, so nothing could start after it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from mnp.errors import SpecError

if TYPE_CHECKING:
    from mnp.spec.jobspec import JobSpec

__all__ = ["CONDITIONS", "PROCESS_NAME", "Dependency", "Health", "ProcessSpec", "check_peers", "check_processes",
           "dependency_cycle", "reserved_name"]

CONDITIONS = ("START", "COMPLETE", "SUCCESS", "HEALTHY")
PROCESS_NAME = r"\A[A-Za-z][A-Za-z0-9_-]{0,62}\Z"
MAX_PROCESSES = 32  # per list (ECS allows 10 containers per task)
_RESERVED = re.compile(r"\A(rank[0-9]+|launcher|ranks)\Z")  # the names of the ranks' own log files
_DAY = 24 * 3600.0
Condition = Literal["START", "COMPLETE", "SUCCESS", "HEALTHY"]


class Health(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """ECS's ``healthCheck``: ``command`` exits 0 when the process is healthy."""

    command: list[str]
    interval: Annotated[float, msgspec.Meta(gt=0, le=_DAY)] = 30.0
    timeout: Annotated[float, msgspec.Meta(gt=0, le=_DAY)] = 5.0
    retries: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3
    start_period: Annotated[float, msgspec.Meta(ge=0, le=_DAY)] = 0.0


class Dependency(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """ECS's ``dependsOn`` entry: ``containerName`` and ``condition``; ``node`` (mnp's own): the process runs on
    that node rather than this one (the coordinator relays its state)."""

    name: str
    condition: Condition
    node: Annotated[int, msgspec.Meta(ge=0)] | None = None


class ProcessSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: Annotated[str, msgspec.Meta(pattern=PROCESS_NAME)]
    command: list[str]
    env: dict[str, str] = {}
    essential: bool = True
    depends_on: Annotated[list[Dependency], msgspec.Meta(max_length=MAX_PROCESSES)] = []
    health: Health | None = None


Processes = Annotated[list[ProcessSpec], msgspec.Meta(max_length=MAX_PROCESSES)]
Dependencies = Annotated[list[Dependency], msgspec.Meta(max_length=MAX_PROCESSES)]


def reserved_name(name: str) -> bool:
    return bool(_RESERVED.match(name))


def dependency_cycle(deps: dict[str, list[str]]) -> list[str] | None:
    """A cycle in ``name -> names it depends on`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    for root in deps:
        if state.get(root):
            continue
        path: list[str] = []
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, i = stack.pop()
            if i == 0:
                state[node] = 1
                path.append(node)
            nexts = deps.get(node, [])
            if i < len(nexts):
                stack.append((node, i + 1))
                nxt = nexts[i]
                if state.get(nxt) == 1:
                    return path[path.index(nxt):] + [nxt]
                if not state.get(nxt):
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                path.pop()
    return None


def _check_target(d: Dependency, target: ProcessSpec, where: str, source: str | None) -> None:
    if d.condition == "HEALTHY" and target.health is None:
        raise SpecError(f"{where}.condition", f"HEALTHY needs a health check, and {d.name!r} has no 'health'", source)
    if d.condition in ("COMPLETE", "SUCCESS") and target.essential:
        raise SpecError(f"{where}.condition", f"{d.condition} cannot be set on an essential process "
                        f"({d.name!r} ending would end the node's work); make it essential: false", source)


def _check_deps(deps: Sequence[Dependency], where: str, known: dict[str, ProcessSpec], source: str | None,
                scope: str) -> None:
    for k, d in enumerate(deps):
        if d.node is not None:
            continue  # another node's process: checked when the nodes are laid out (check_peers)
        target = known.get(d.name)
        if target is None:
            names = ", ".join(sorted(known)) or "none"
            raise SpecError(f"{where}[{k}].name", f"no process named {d.name!r} runs on these nodes "
                            f"({scope}: {names})", source)
        _check_target(d, target, f"{where}[{k}]", source)


def check_processes(top: Sequence[ProcessSpec], top_ranks: Sequence[Dependency],
                    ranges: Sequence[tuple[Sequence[ProcessSpec], Sequence[Dependency] | None]],
                    source: str | None) -> None:
    """Check the job's processes: the top level's (``top``, ``top_ranks`` = ``ranks_depend_on``) alone, and each
    range's together with the top level's. Raises SpecError naming the field at fault."""
    scopes: list[tuple[str, Sequence[ProcessSpec], Sequence[Dependency] | None, dict[str, ProcessSpec]]] = [
        ("", top, top_ranks, {})]
    for i, (procs, ranks) in enumerate(ranges):
        scopes.append((f"node_ranges[{i}].", procs, ranks, {p.name: p for p in top}))
    for prefix, procs, ranks, inherited in scopes:
        known = dict(inherited)
        for j, p in enumerate(procs):
            field = f"{prefix}processes[{j}].name"
            if reserved_name(p.name):
                raise SpecError(field, f"{p.name!r} is reserved (the ranks' own names: rankN, launcher, ranks)",
                                source)
            if p.name in known:
                where = "the top level's processes" if p.name in inherited else "another entry of this list"
                raise SpecError(field, f"{p.name!r} clashes with {where}", source)
            known[p.name] = p
        scope = "the top level's processes" if not prefix else f"{prefix.rstrip('.')} and the top level"
        for j, p in enumerate(procs):
            _check_deps(p.depends_on, f"{prefix}processes[{j}].depends_on", known, source, scope)
        if ranks:
            _check_deps(ranks, f"{prefix}ranks_depend_on", known, source, scope)
        cycle = dependency_cycle({name: [d.name for d in p.depends_on if d.node is None]
                                  for name, p in known.items()})
        if cycle:
            j = next((k for k, p in enumerate(procs) if p.name in cycle), 0)
            raise SpecError(f"{prefix}processes[{j}].depends_on", "dependency cycle: " + " -> ".join(cycle), source)


def check_peers(spec: JobSpec, owners: Sequence[int | None], source: str | None) -> None:
    """Dependencies on another node's processes (``node:``), once the node count is known: the node exists and
    runs the process, the condition suits it, and no cycle runs across nodes. ``owners``: each node's range."""
    n = len(owners)
    ranges = spec.node_ranges

    def on_node(k: int) -> dict[str, ProcessSpec]:
        i = owners[k]
        return {p.name: p for p in (*spec.processes, *(ranges[i].processes if i is not None else ()))}

    lists = [("", spec.processes, spec.ranks_depend_on)]
    lists += [(f"node_ranges[{i}].", r.processes, r.ranks_depend_on or []) for i, r in enumerate(ranges)]
    for prefix, procs, ranks_after in lists:
        declared = [(f"{prefix}processes[{j}].depends_on", p.depends_on) for j, p in enumerate(procs)]
        for where, deps in [*declared, (f"{prefix}ranks_depend_on", ranks_after)]:
            for k, d in enumerate(deps):
                if d.node is None:
                    continue
                if d.node >= n:
                    raise SpecError(f"{where}[{k}].node", f"is {d.node}, but the job has {n} node(s) "
                                    f"(0..{n - 1})", source)
                target = on_node(d.node).get(d.name)
                if target is None:
                    raise SpecError(f"{where}[{k}].name", f"no process named {d.name!r} runs on node {d.node}",
                                    source)
                _check_target(d, target, f"{where}[{k}]", source)
    if not any(d.node is not None for _, procs, _r in lists for p in procs for d in p.depends_on):
        return
    graph: dict[str, list[str]] = {}
    for k in range(n):
        for name, p in on_node(k).items():
            graph[f"{name}@{k}"] = [f"{d.name}@{k if d.node is None else d.node}" for d in p.depends_on]
    cycle = dependency_cycle(graph)
    if cycle:
        first = cycle[0].split("@")[0]
        j = next((j for j, p in enumerate(spec.processes) if p.name == first), None)
        owner = owners[int(cycle[0].split("@")[1])]
        where = f"processes[{j}]" if j is not None or owner is None else \
            f"node_ranges[{owner}].processes[{[p.name for p in ranges[owner].processes].index(first)}]"
        raise SpecError(f"{where}.depends_on", "dependency cycle across nodes: " + " -> ".join(cycle), source)
