"""The options ``mnp launch`` and ``mnp run`` share (:func:`job_options`), gathered in one :class:`JobOptions`.

What they mean for the job itself -- a spec made from a command line, a job file's fields overridden, ranks laid
out over nodes -- is :mod:`mnp.cli.layout`'s; this module only parses. The node-source options are
:mod:`mnp.cli.options`' (``doctor`` takes them too), passed on untouched in ``JobOptions.where``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import click

from mnp.cli.options import node_source_options
from mnp.cli.types import MAX_NODES_OPTION, Seconds
from mnp.config import DEFAULTS
from mnp.placement import BIND_SPELLINGS, MAP_SPELLINGS

__all__ = ["JobOptions", "job_options", "MAX_RANKS", "MAX_RANKS_PER_NODE"]

MAX_RANKS_PER_NODE = 4096  # mnp.spec.jobspec.MAX_RANKS_PER_NODE (not imported: --help stays quick)
MAX_RANKS = MAX_NODES_OPTION * MAX_RANKS_PER_NODE
_MAX_TIMEOUT = 365 * 24 * 3600  # mnp.spec.jobspec.MAX_TIMEOUT
_MAX_ARRAY = 10_000  # mnp.spec.jobspec.MAX_ARRAY
_BIND = tuple(BIND_SPELLINGS)  # placement's spellings: a dict of plain data, no import cost
_MAP = tuple(MAP_SPELLINGS)


@dataclass(frozen=True)
class JobOptions:
    """Everything ``launch`` and ``run`` were told besides the job itself (None: not given)."""

    nodes: int | None = None
    ntasks: int | None = None
    per_node: int | None = None
    export: tuple[str, ...] = ()
    name: str | None = None
    timeout: float | None = None
    mpi: str | None = None
    transport: str | None = None
    shm_size: str | None = None
    bind_to: str | None = None
    map_by: str | None = None
    stdin: str | None = None
    label: bool | None = None
    timestamp: bool = False
    output: str | None = None
    error: str | None = None
    as_json: bool = False
    dry_run: bool = False
    explain: bool = False
    grace: float | None = None
    isolate: bool | None = None
    iface: str | None = None
    remount_shm: bool = False
    array: int | None = None
    max_concurrency: int | None = None
    depends_on: tuple[str, ...] = ()
    transit_timeout: float | None = None
    on_stuck: str | None = None
    notify: str | None = None
    tree_width: int | None = None
    where: dict[str, Any] = field(default_factory=dict)  # node-source options, for nodes_from_options


_JOB = [
    click.option("-N", "--nodes", type=click.IntRange(1, MAX_NODES_OPTION), envvar="MNP_NODES",
                 help="Number of nodes (overrides the job's 'nodes'; default: the job's, else every host given, "
                      "else 1)."),
    click.option("-n", "--ntasks", "-np", "ntasks", type=click.IntRange(1, MAX_RANKS), metavar="RANKS",
                 help="Ranks in all (mpirun -n, srun -n), in blocks node by node; when they do not divide evenly "
                      "the first nodes get one more."),
    click.option("--ntasks-per-node", "per_node", type=click.IntRange(1, MAX_RANKS_PER_NODE), metavar="RANKS",
                 help="Ranks on every node (overrides the job's ranks_per_node)."),
    click.option("-x", "--export", "export", multiple=True, metavar="VAR[=VAL]",
                 help="Set VAR in every rank's environment, to VAL or to its value here; repeat for more."),
    click.option("-J", "--job-name", "name", help="The job's name (default: the job file's, or the program's)."),
    click.option("--timeout", type=Seconds(0, _MAX_TIMEOUT), metavar="SECONDS",
                 help="Seconds for the whole job, then SIGTERM, grace, SIGKILL and exit 124 (overrides 'timeout')."),
    click.option("--mpi", type=click.Choice(["mpich", "openmpi", "impi", "auto"]),
                 help="MPI family of the program (default: the job's, else detected from the program)."),
    click.option("--transport", type=click.Choice(["auto", "tcp", "efa", "shm"]),
                 help="Transport between ranks (default: the job's, else auto: shm within a node, EFA or TCP "
                      "between)."),
    click.option("--shm-size", metavar="SIZE", help="/dev/shm size on each node, e.g. 512Mi or 2Gi (overrides "
                                                    "'shm_size')."),
    click.option("--bind-to", "--cpu-bind", "bind_to", type=click.Choice(_BIND), metavar="core|socket|none",
                 help="Bind each rank to a core, to its socket (numa, package: the same here), or not at all "
                      "(srun's --cpu-bind cores|sockets|none too); within each node's own CPUs. Default: what the "
                      "MPI does (Open MPI: core for up to 2 ranks, else socket; MPICH/Hydra: none)."),
    click.option("--map-by", "--distribution", "map_by", type=click.Choice(_MAP),
                 metavar="slot|core|socket|node|block|cyclic",
                 help="Rank placement: over nodes in blocks (slot, core, socket, block) or round robin (node, "
                      "cyclic); within a node in core order (slot, core) or round robin over sockets (socket, "
                      "block, cyclic); srun's two-level NODES:WITHIN as written."),
    click.option("--stdin", metavar="0|RANK|all|none",
                 help="Which ranks read mnp's standard input: rank 0 (default, as mpirun), another rank, all (as "
                      "srun), or none."),
    click.option("--label/--no-label", default=None,
                 help="Prefix each output line with [node N rank R] (default: when the job has more than one "
                      "rank)."),
    click.option("--timestamp", is_flag=True, help="Prefix each output line with the time it arrived."),
    click.option("--output", metavar="PATTERN",
                 help="Write rank stdout to files instead of the terminal: %j job id, %n node, %r rank, %h host, "
                      "%% a percent sign."),
    click.option("--error", metavar="PATTERN", help="Write rank stderr to files instead of the terminal (as "
                                                    "--output)."),
    click.option("--json", "as_json", is_flag=True,
                 help="Print one JSON object at the end (rank output goes to stderr)."),
    click.option("--dry-run", is_flag=True,
                 help="Print the plan (nodes, ranks, commands, env, transport) and run nothing."),
    click.option("--explain", is_flag=True,
                 help="Print the fabric decisions (transport, interface, /dev/shm) and why."),
    click.option("--grace", type=Seconds(0, 86400), metavar="SECONDS",
                 help=f"Seconds between SIGTERM and SIGKILL when stopping ranks, at most a day (default: "
                      f"$MNP_GRACE, else {DEFAULTS['grace']:g})."),
    click.option("--isolate/--no-isolate", default=None,
                 help="Local nodes in their own namespaces (default: when root) or as plain processes."),
    click.option("--iface", envvar="MNP_IFACE", help="Interface MPI uses between nodes (default: probed on every "
                                                     "node)."),
    click.option("--array", type=click.IntRange(1, _MAX_ARRAY), metavar="N",
                 help="Run the job N times as children JOB:0..N-1, each with MNP_ARRAY_INDEX and "
                      "AWS_BATCH_JOB_ARRAY_INDEX (an AWS Batch array job; overrides the job's 'array')."),
    click.option("--max-concurrency", type=click.IntRange(1, _MAX_ARRAY), metavar="K",
                 help="Array children running at once, at most (default: all, or as many as the hosts hold)."),
    click.option("--depends-on", "depends_on", multiple=True, metavar="JOB[:N_TO_N|:SEQUENTIAL]",
                 help="Wait in PENDING until JOB succeeded (an id, prefix or name; repeat for more). N_TO_N: child "
                      "i waits for JOB's child i; SEQUENTIAL (alone or after JOB): child i waits for child i-1."),
    click.option("--transit-timeout", type=Seconds(0.001, _MAX_TIMEOUT), metavar="SECONDS",
                 help="Seconds from submission to RUNNING after which the job is stuck: one alert line, kept in "
                      "its record (overrides 'transit_timeout'; default: none)."),
    click.option("--on-stuck", type=click.Choice(["wait", "fail"]),
                 help="What a stuck job does: wait on (default), or fail with the alert as its reason."),
    click.option("--notify", metavar="CMD", envvar="MNP_NOTIFY",
                 help="Shell command run with each stuck-in-transit alert as JSON on its stdin (killed after "
                      "$MNP_NOTIFY_TIMEOUT, default 10 s; its failure never fails the job)."),
    click.option("--tree-width", type=click.IntRange(1, MAX_NODES_OPTION), metavar="K", envvar="MNP_TREE_WIDTH",
                 help="Agents the coordinator (and each relaying agent) holds at most: above K nodes the control "
                      "plane is a K-ary tree, as Slurm's TreeWidth (default 32; local and SSH nodes)."),
    click.option("--remount-shm", is_flag=True, envvar="MNP_REMOUNT_SHM",
                 help="As root, grow a node's /dev/shm that is smaller than the job needs (instead of stopping)."),
]


@functools.cache
def _source_names() -> frozenset[str]:
    """The parameter names of the node-source options (whatever mnp.cli.options lists today)."""
    probe = node_source_options(lambda: None)
    return frozenset(p.name for p in probe.__click_params__ if p.name)


def job_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add the job options and the node-source options to a command; it gets them as ``opts: JobOptions``."""
    mine = [f_.name for f_ in fields(JobOptions) if f_.name != "where"]

    @functools.wraps(f)
    def command(**kw: Any) -> Any:
        where = {k: kw.pop(k) for k in list(kw) if k in _source_names()}
        opts = JobOptions(**{k: kw.pop(k) for k in mine}, where=where)
        return f(opts=opts, **kw)

    wrapped: Any = node_source_options(command)
    for option in reversed(_JOB):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[no-any-return]
