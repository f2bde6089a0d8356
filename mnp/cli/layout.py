"""From options to the job: a spec made from a bare command (``mnp run``), a job file's fields overridden by
options (``mnp launch``), and ranks laid out over nodes the way ``srun -N -n`` does.

Everything goes through mnp.spec's own validation (:func:`~mnp.spec.model.spec_from_dict`,
:func:`~mnp.spec.resolve.resolve_nodes`), so an option says what a job file's field would say, under the option's
name: ``--shm-size: 'lots' is not a size ...``, exit 2.

**Ranks over nodes.** ``-N`` is nodes, ``-n`` ranks in all, ``--ntasks-per-node`` ranks on each node. ``-n``
alone is split over the nodes in blocks, the first nodes one more when it does not divide (``-N 2 -n 5``: 3 + 2,
ranks 0-2 on node 0, as srun's block distribution); ``-n`` with ``--ntasks-per-node`` and no ``-N`` takes
ceil(n / per-node) nodes. Uneven counts are node ranges of the spec, so a job file that has node ranges of its
own needs ``-n`` to divide by its nodes. ``run`` starts one rank per node unless told otherwise.

**``-n`` used to mean nodes on ``launch``.** ``-n`` without ``-N`` is how an old invocation looks. When the job
file sets ``ranks_per_node`` it already says how many ranks it runs: ``-n`` must then agree, else it is an error
pointing to ``-N`` (``launch -n 4 job`` fails loudly instead of running 4 ranks on the job's nodes). Where the job
leaves ranks open, it runs, with a one-line note that ``-n`` is ranks and ``-N`` nodes. With ``-N`` given, ``-n``
is plainly ranks and overrides the job's ``ranks_per_node``, as ``--ntasks-per-node`` does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnp.cli.jobopts import JobOptions
from mnp.errors import SpecError, UsageError

if TYPE_CHECKING:
    from mnp.spec.jobspec import JobSpec

__all__ = ["Job", "job_from_command", "job_from_file", "split_ranks"]

# a spec field set from an option -> the option, as errors name it
_OPTION_OF = {"name": "-J/--job-name", "timeout": "--timeout", "mpi": "--mpi", "transport": "--transport",
              "shm_size": "--shm-size", "bind_to": "--bind-to", "map_by": "--map-by", "env": "-x/--export",
              "command": "COMMAND", "nodes": "-N/--nodes", "main_node": "-N/--nodes",
              "array": "--array/--max-concurrency", "transit_timeout": "--transit-timeout", "on_stuck": "--on-stuck"}


@dataclass(frozen=True)
class Job:
    """A validated job and how it is laid out: ``nodes`` nodes, ``counts`` ranks on each (None where the node's
    CPU count or slots decide)."""

    spec: JobSpec
    source: str | None
    nodes: int
    counts: list[int | None]
    notes: list[str]
    stdin: str = "0"  # which ranks read mnp's stdin: a rank, "all" or "none"

    @property
    def ranks(self) -> int | None:
        """Ranks in all, where every node's count is known."""
        return None if any(c is None for c in self.counts) else sum(c for c in self.counts if c)


def split_ranks(ntasks: int, nodes: int) -> list[int]:
    """``ntasks`` ranks over ``nodes`` nodes in blocks, the first nodes one more (5 over 2: [3, 2])."""
    if ntasks < nodes:
        raise UsageError(f"-n/--ntasks: {ntasks} rank(s) cannot fill {nodes} nodes (every node runs at least one "
                         f"rank): use -N {ntasks} or fewer nodes")
    per, extra = divmod(ntasks, nodes)
    return [per + (i < extra) for i in range(nodes)]


def _option_error(e: SpecError) -> UsageError:
    head, _, key = e.field.partition(".")
    option = _OPTION_OF.get(head, head)
    if head == "env" and key:
        option = f"-x {key}"
    return UsageError(f"{option}: {e.problem}" if option else e.problem)


def _checked(fields: dict[str, Any]) -> JobSpec:
    """``fields`` validated as a job file's would be, errors named by option."""
    from mnp.spec.model import spec_from_dict

    try:
        return spec_from_dict({"command": ["true"], **fields})
    except SpecError as e:
        raise _option_error(e) from None


def _exports(words: tuple[str, ...]) -> dict[str, str]:
    """``-x VAR=VAL`` and ``-x VAR`` (its value here, as mpirun's -x) -> the variables."""
    out = {}
    for word in words:
        name, eq, value = word.partition("=")
        if not eq:
            if name not in os.environ:
                raise UsageError(f"-x {name}: not set in this environment (give -x {name}=VALUE)")
            value = os.environ[name]
        out[name] = value
    return out


def _overrides(opts: JobOptions) -> dict[str, Any]:
    """The spec fields the options set (validated), by field name."""
    raw: dict[str, Any] = {k: v for k, v in (("name", opts.name), ("timeout", opts.timeout), ("mpi", opts.mpi),
                                             ("transport", opts.transport), ("shm_size", opts.shm_size),
                                             ("transit_timeout", opts.transit_timeout), ("on_stuck", opts.on_stuck),
                                             ("bind_to", opts.bind_to), ("map_by", opts.map_by))
                           if v is not None}
    env = _exports(opts.export)
    if env:
        raw["env"] = env
    checked = _checked(raw)
    return {k: getattr(checked, k) for k in raw}


def _counts(opts: JobOptions, nodes: int) -> list[int] | None:
    """Ranks per node from -n and --ntasks-per-node on ``nodes`` nodes (None: neither given)."""
    n, per = opts.ntasks, opts.per_node
    if n is None:
        return None if per is None else [per] * nodes
    if per is None or opts.nodes is None:  # -n alone, or with per-node and the nodes it takes: at most per-node
        return split_ranks(n, nodes)
    if n != nodes * per:
        raise UsageError(f"-n/--ntasks: {n} rank(s) is not {nodes} node(s) x {per} (--ntasks-per-node); give two "
                         "of -N, -n and --ntasks-per-node, or numbers that agree")
    return [per] * nodes


def _node_count(opts: JobOptions, default: int) -> int:
    if opts.nodes is None and opts.ntasks is not None and opts.per_node is not None:
        return -(-opts.ntasks // opts.per_node)
    return opts.nodes or default


def _with_counts(spec: JobSpec, counts: list[int]) -> JobSpec:
    """``spec`` running ``counts[i]`` ranks on node i: one top-level count, or two node ranges when uneven."""
    import msgspec

    from mnp.spec.model import NodeRangeSpec
    from mnp.spec.noderange import NodeRange

    if len(set(counts)) == 1:
        ranges = [msgspec.structs.replace(r, ranks_per_node=None) for r in spec.node_ranges]
        return msgspec.structs.replace(spec, ranks_per_node=counts[0], node_ranges=ranges)
    if spec.node_ranges:
        raise UsageError(f"-n/--ntasks: {sum(counts)} rank(s) do not divide over {len(counts)} nodes, and the job "
                         "has node_ranges of its own: give a multiple of the node count")
    more = counts.count(counts[0])
    return msgspec.structs.replace(spec, ranks_per_node=counts[-1], node_ranges=[
        NodeRangeSpec(NodeRange.parse(f"0:{more - 1}"), ranks_per_node=counts[0]),
        NodeRangeSpec(NodeRange.parse(f"{more}:"), ranks_per_node=counts[-1])])


def _stdin(opts: JobOptions, piped_job: bool, ranks: int | None) -> str:
    """Which ranks read mnp's stdin: ``--stdin``, else rank 0 -- or none when the job itself came on stdin."""
    which = opts.stdin if opts.stdin is not None else "none" if piped_job or ranks == 0 else "0"  # 0: processes only
    if which in ("all", "none"):
        if piped_job and which == "all":
            raise UsageError("--stdin: the job itself came on stdin; nothing is left for the ranks")
        return which
    if not which.isdigit():
        raise UsageError(f"--stdin: {which!r} is not a rank, 'all' or 'none'")
    if piped_job:
        raise UsageError("--stdin: the job itself came on stdin; nothing is left for the ranks")
    if ranks is not None and int(which) >= ranks:
        raise UsageError(f"--stdin: rank {int(which)} is not in the job (ranks 0-{ranks - 1})")
    return str(int(which))


def _finish(spec: JobSpec, source: str | None, nodes: int, hosts: int | None, notes: list[str], opts: JobOptions,
            piped_job: bool = False) -> Job:
    """Checks a launch would make before any node exists, made here so a problem is the only line printed."""
    from mnp.spec.resolve import resolve_nodes

    if hosts is not None and nodes > hosts:
        raise UsageError(f"--nodes: {nodes} nodes asked for, but only {hosts} host(s) given")
    try:
        work = resolve_nodes(spec, source)
    except SpecError as e:
        raise (e if source else _option_error(e)) from None
    counts = [w.ranks_per_node for w in work]
    ranks = None if None in counts else sum(c or 0 for c in counts)
    return Job(spec, source, nodes, counts, notes, _stdin(opts, piped_job, ranks))


def job_from_file(spec: JobSpec, source: str | None, opts: JobOptions, hosts: int | None,
                  piped: bool = False) -> Job:
    """``mnp launch``: the job file's spec with the options applied (``piped``: the job came on stdin)."""
    import msgspec

    from mnp.spec.resolve import resolve_nodes

    over = _overrides(opts)
    if "env" in over:  # -x wins over the job's env, node ranges' included
        ranges = [msgspec.structs.replace(r, env={**r.env, **over["env"]}) for r in spec.node_ranges]
        over = {**over, "env": {**spec.env, **over["env"]}, "node_ranges": ranges}
    spec = msgspec.structs.replace(spec, **over)
    spec = _with_array(spec, opts)
    nodes = _node_count(opts, hosts or spec.nodes)
    spec = _resized(spec, nodes, source)
    notes = []
    if opts.ntasks is not None and opts.per_node is None and opts.nodes is None:  # how -n looked when it was nodes
        set_by_job = [w.ranks_per_node for w in resolve_nodes(spec, source)]
        total = sum(c or 0 for c in set_by_job)
        if any(c is not None for c in set_by_job) and (None in set_by_job or total != opts.ntasks):
            runs = f"{total} ranks on {nodes} node(s)" if None not in set_by_job else "ranks_per_node on some nodes"
            raise UsageError(f"-n {opts.ntasks}: -n now means ranks (the mpirun/srun habit), and the job sets "
                             f"{runs}; use -N {opts.ntasks} for {opts.ntasks} nodes (-N N -n R for R ranks)")
        notes.append(f"-n is ranks (as in mpirun and srun): {opts.ntasks} rank(s) on {nodes} node(s); "
                     f"-N {opts.ntasks} asks for {opts.ntasks} nodes")
        if None in set_by_job:
            spec = _with_counts(spec, split_ranks(opts.ntasks, nodes))
    else:
        counts = _counts(opts, nodes)
        if counts is not None:
            spec = _with_counts(spec, counts)
    return _finish(spec, source, nodes, hosts, notes, opts, piped)


def _resized(spec: JobSpec, nodes: int, source: str | None) -> JobSpec:
    try:
        return spec.with_nodes(nodes)
    except SpecError as e:
        raise _option_error(e) from None


def _program(command: tuple[str, ...]) -> str:
    """What a job made from ``command`` is named: a script's name (``python app.py``: app), else the program's."""
    script = next((w for w in command[1:3] if w.endswith((".py", ".sh", ".pl", ".R", ".jl"))), None)
    return Path(script).stem if script else Path(command[0]).name if command else "run"


def job_from_command(command: tuple[str, ...], opts: JobOptions, hosts: int | None) -> Job:
    """``mnp run``: a job made from a command line, one rank per node unless -n/--ntasks-per-node say more."""
    from mnp.spec.jobspec import safe_name
    from mnp.spec.model import spec_from_dict

    nodes = _node_count(opts, hosts or 1)
    fields: dict[str, Any] = {"name": safe_name(_program(command)), "nodes": nodes, **_overrides(opts)}
    try:
        spec = spec_from_dict({**fields, "command": list(command)})
    except SpecError as e:
        raise _option_error(e) from None
    spec = _with_counts(spec, _counts(opts, nodes) or [1] * nodes)
    return _finish(_with_array(spec, opts), None, nodes, hosts, [], opts)


def _with_array(spec: JobSpec, opts: JobOptions) -> JobSpec:
    """``--array`` and ``--max-concurrency`` over the job's ``array``."""
    import msgspec

    from mnp.spec.jobspec import ArraySpec

    if opts.array is None and opts.max_concurrency is None:
        return spec
    if opts.array is None and spec.array is None:
        raise UsageError("--max-concurrency: only for an array job (give --array N)")
    size = opts.array if opts.array is not None else spec.array.size  # type: ignore[union-attr]
    most = opts.max_concurrency if opts.max_concurrency is not None else \
        spec.array.max_concurrency if spec.array is not None else None
    return msgspec.structs.replace(spec, array=ArraySpec(size, most))
