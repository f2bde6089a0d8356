"""The validated job: :class:`JobSpec` and its parts, as msgspec structs with their limits.

These are the types only; :mod:`mnp.spec.model` reads mnp job files into them and :mod:`mnp.spec.batchdef` reads
AWS Batch job definitions into them. The constraints here apply when a job file is decoded (msgspec checks them
then); code that builds a spec by hand is trusted.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from mnp.errors import SpecError
from mnp.placement import BIND_SPELLINGS, MAP_SPELLINGS
from mnp.spec.noderange import NodeRange
from mnp.spec.processes import Dependencies, Processes
from mnp.spec.retry import RetryStrategy

__all__ = [
    "MAX_NODES",
    "MAX_RANGES",
    "MAX_RANKS_PER_NODE",
    "MAX_SHM",
    "MAX_TIMEOUT",
    "NAME_PATTERN",
    "JobSpec",
    "NodeRangeSpec",
    "ArraySpec",
    "MAX_ARRAY",
    "safe_name",
]

MAX_NODES = 1000  # nodes in one job, from a job file or --nodes
MAX_RANGES = 100  # node_ranges entries (each must be nested in or disjoint from every other)
MAX_RANKS_PER_NODE = 4096
MAX_TIMEOUT = 365 * 24 * 3600.0  # seconds; a finite bound also rules out .inf
MAX_SHM = 1 << 50  # bytes (1 PiB)
NAME_PATTERN = r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z"
ENV_NAME = r"\A[A-Za-z_][A-Za-z0-9_]*\Z"

CHOICES: dict[str, tuple[str, ...]] = {
    "mpi": ("mpich", "openmpi", "impi", "auto"),
    "launcher": ("auto", "pmi", "mpirun"),
    "transport": ("auto", "tcp", "efa", "shm"),
    "action": ("retry", "exit"),
    "on_stuck": ("wait", "fail"),
    "bind_to": tuple(BIND_SPELLINGS),  # the mpirun and srun spellings, as mnp.placement reads them
    "map_by": tuple(MAP_SPELLINGS),
    "condition": ("START", "COMPLETE", "SUCCESS", "HEALTHY"),
}
BindTo = Literal["auto", "none", "core", "cores", "socket", "sockets", "package", "numa"]
MapBy = Literal["auto", "slot", "core", "socket", "package", "numa", "node", "block", "cyclic", "block:block",
                "block:cyclic", "cyclic:block", "cyclic:cyclic"]

def safe_name(raw: str) -> str:
    """Fit any text (a file name, a Batch job definition name) to :data:`NAME_PATTERN`."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", raw)
    return re.sub(r"^[^A-Za-z0-9]+", "", safe)[:128] or "job"


_Count = Annotated[int, msgspec.Meta(ge=1, le=MAX_RANKS_PER_NODE)]
MAX_ARRAY = 10_000  # children of an array job (Batch's limit)


class ArraySpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``array``: run the job ``size`` times (Batch's ``arrayProperties.size``), at most ``max_concurrency`` at
    once (None: as many as the nodes allow)."""

    size: Annotated[int, msgspec.Meta(ge=1, le=MAX_ARRAY)]
    max_concurrency: Annotated[int, msgspec.Meta(ge=1, le=MAX_ARRAY)] | None = None


class NodeRangeSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One entry of ``node_ranges``: what the nodes of ``target_nodes`` run instead of the job's defaults."""

    target_nodes: NodeRange
    command: list[str] | None = None
    env: dict[str, str] = {}
    ranks_per_node: _Count | None = None
    processes: Processes = []  # beside the top level's (mnp.spec.processes)
    ranks_depend_on: Dependencies | None = None  # replaces the top level's


class JobSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A validated job. Node-dependent checks (ranges against the node count) are :func:`mnp.spec.resolve.
    resolve_nodes`'s, since ``--nodes`` may change the count."""

    name: Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)] = "job"
    nodes: Annotated[int, msgspec.Meta(ge=1, le=MAX_NODES)] = 1
    main_node: Annotated[int, msgspec.Meta(ge=0, lt=MAX_NODES)] = 0
    ranks_per_node: _Count | None = None
    command: list[str] | None = None
    env: dict[str, str] = {}
    mpi: Literal["mpich", "openmpi", "impi", "auto"] = "auto"
    launcher: Literal["auto", "pmi", "mpirun"] = "auto"
    shm_size: Annotated[int, msgspec.Meta(ge=1, le=MAX_SHM)] | None = None
    transport: Literal["auto", "tcp", "efa", "shm"] = "auto"
    bind_to: BindTo = "auto"
    map_by: MapBy = "auto"
    timeout: Annotated[float, msgspec.Meta(gt=0, le=MAX_TIMEOUT)] | None = None
    workdir: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)] | None = None
    retry: RetryStrategy | None = None
    node_ranges: Annotated[list[NodeRangeSpec], msgspec.Meta(max_length=MAX_RANGES)] = []
    array: ArraySpec | None = None
    depends_on: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=300)]],
                          msgspec.Meta(max_length=20)] = []
    transit_timeout: Annotated[float, msgspec.Meta(gt=0, le=MAX_TIMEOUT)] | None = None
    on_stuck: Literal["wait", "fail"] = "wait"
    processes: Processes = []  # on every node (mnp.spec.processes)
    ranks_depend_on: Dependencies = []

    def with_nodes(self, nodes: int) -> JobSpec:
        """This job on ``nodes`` nodes (``--nodes``). Raises SpecError outside 1..MAX_NODES."""
        if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= MAX_NODES:
            raise SpecError("nodes", f"must be from 1 to {MAX_NODES}, got {nodes!r}")
        return msgspec.structs.replace(self, nodes=nodes)

    def with_fields(self, **fields: object) -> JobSpec:
        return msgspec.structs.replace(self, **fields)

    def with_main_node(self, main_node: int) -> JobSpec:
        return msgspec.structs.replace(self, main_node=main_node)
