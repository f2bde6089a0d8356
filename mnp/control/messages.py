"""Every message between the coordinator and the node agents, as typed msgspec structs.

A message is one JSON frame tagged by ``"t"`` (the struct's tag), optionally followed by one raw bytes frame
(rank output, a remote command's output). Each direction has its own union: an agent can only decode what a
coordinator may send (:data:`ToAgent`) and the coordinator only what an agent may send (:data:`ToCoordinator`),
so a message of the wrong role, an unknown kind or a field of the wrong type is an :class:`InvalidMessage`, never
an exception in an event loop.

The node a message comes from is not a field: the coordinator knows it from the CURVE key that authenticated the
connection (see :mod:`mnp.control.channel`), never from anything the peer claims.

The exchange, in order::

    agent                        coordinator
    Hello            ------->                      (once, after dialling)
                     <-------    Ping              (every heartbeat, both ways: Heartbeat / Ping)
                     <-------    RemountShm        (--remount-shm only)  -> ShmRemounted
                     <-------    Start             (the node's ranks, or its part for a launcher)
                     <-------    PeerProcess       (another node's process that one here depends on)
    Started          ------->
                     <-------    Stdin + bytes     (mnp's stdin, to rank 0 / all / none: --stdin)
    Output + bytes   ------->                      (rank stdout/stderr, as it comes)
    Barrier          ------->    (all nodes)       PMI barrier: each node's puts ...
                     <-------    BarrierDone       ... and everyone's puts back
    Abort            ------->                      (PMI abort from a rank)
    Exit             ------->                      (each rank)
    ProcessStarted / ProcessHealth / ProcessOutput + bytes / ProcessExit  ------->   (the node's processes)
                     <-------    Kill              (first failure: stop every rank)
    Rexec            ------->    Exec  -> (node)   launcher daemons: the main node asks, another node runs
    ExecOutput/Exit  ------->    RexecOutput/Exit -> (main node)
                     <-------    Shutdown
    Bye              ------->
    Telemetry        ------->                      (every MNP_TELEMETRY_INTERVAL s while the node's processes run)
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeAlias

import msgspec

__all__ = [
    "RankSpec", "DependsOn", "HealthCheck", "ProcessStart", "ProcessStarted", "ProcessHealth", "ProcessOutput",
    "ProcessExit", "PeerProcess", "Start", "Stdin", "BarrierDone", "Kill", "Ping", "Shutdown", "Exec", "ExecKill",
    "RexecOutput", "RexecExit", "RemountShm", "Hello", "Started", "Output", "Exit", "Barrier", "Abort", "Heartbeat",
    "Bye", "ExecOutput", "ExecExit", "Rexec", "RexecKill", "ShmRemounted", "ToAgent", "ToCoordinator", "InvalidMessage",
    "encode", "decode_to_agent", "decode_to_coordinator", "decode_frame", "MAX_FRAME",
    "Telemetry",
]

#: the largest JSON frame either side decodes (a barrier's puts for thousands of ranks fit easily)
MAX_FRAME = 64 << 20

Stream: TypeAlias = Literal["stdout", "stderr"]


class _Msg(msgspec.Struct, frozen=True, tag_field="t", forbid_unknown_fields=True):
    pass


# -- coordinator -> agent -------------------------------------------------------------------------------------------
class RankSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One process the agent starts: a rank (served PMI-1) or, with ``pmi=False``, a launcher. ``cpus``: the CPUs
    it is bound to (:mod:`mnp.placement`; None: the node's whole set)."""

    rank: int
    local_rank: int
    argv: list[str]
    pmi: bool = True
    cpus: list[int] | None = None


class DependsOn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``node``: the process runs on that node (its state comes as ``PeerProcess``); None: on this one."""

    name: str
    condition: Literal["START", "COMPLETE", "SUCCESS", "HEALTHY"]
    node: int | None = None


class HealthCheck(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    argv: list[str]
    interval: float
    timeout: float
    retries: int
    start_period: float


class ProcessStart(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One named process beside the ranks (ECS's container): started once ``depends_on`` is met."""

    name: str
    argv: list[str]
    env: dict[str, str] = {}
    essential: bool = True
    depends_on: list[DependsOn] = []
    health: HealthCheck | None = None


class Start(_Msg, frozen=True, tag="start"):
    """Start this node's part of the job.

    ``daemons``: this node runs a launcher's daemons (``Exec``) instead of ranks of its own; ``rsh``: this node runs
    the launcher and gets an ``mnp-rsh`` relay; ``io_ranks``: ranks a launcher starts here, whose output comes
    through per-rank FIFOs; ``files``: private files (the launcher's hostfile), named ``{name}`` in argv;
    ``stdin_ranks``: processes started here whose standard input the coordinator feeds (``Stdin``), the others
    read /dev/null."""

    kvsname: str
    size: int
    mapping: str
    cwd: str
    env: dict[str, str]
    ranks: list[RankSpec]
    files: dict[str, str] = {}
    rsh: bool = False
    daemons: bool = False
    io_ranks: list[int] = []
    stdin_ranks: list[int] = []
    processes: list[ProcessStart] = []
    ranks_depend_on: list[DependsOn] = []
    grace: float = 5.0  # SIGTERM -> SIGKILL when an essential process ends the node's work


class PeerProcess(_Msg, frozen=True, tag="peer_process"):
    """Another node's process that one here depends on: it ``started``, ``exited`` (with ``code``; never started
    when ``exited`` and not ``started``), or its health changed (``healthy``)."""

    node: int
    name: str
    started: bool = False
    exited: bool = False
    code: int | None = None
    healthy: bool | None = None


class Stdin(_Msg, frozen=True, tag="stdin"):
    """Bytes (the data frame) for the standard input of ``ranks`` on this node; ``eof``: then close it."""

    ranks: list[int]
    eof: bool = False


class BarrierDone(_Msg, frozen=True, tag="barrier_done"):
    kvs: dict[str, str]


class Kill(_Msg, frozen=True, tag="kill"):
    """Stop every process (SIGTERM, SIGKILL after ``grace``); ``stay``: the agent then waits for ``Shutdown``."""

    grace: float
    stay: bool = False


class Ping(_Msg, frozen=True, tag="ping"):
    pass


class Shutdown(_Msg, frozen=True, tag="shutdown"):
    pass


class Exec(_Msg, frozen=True, tag="exec"):
    """Run a launcher's daemon command line here (checked by the agent before anything runs)."""

    id: str
    command: str


class ExecKill(_Msg, frozen=True, tag="exec_kill"):
    id: str


class RexecOutput(_Msg, frozen=True, tag="rexec_output"):
    id: str
    stream: Stream


class RexecExit(_Msg, frozen=True, tag="rexec_exit"):
    id: str
    code: int


class RemountShm(_Msg, frozen=True, tag="remount_shm"):
    size: int


# -- agent -> coordinator -------------------------------------------------------------------------------------------
class Hello(_Msg, frozen=True, tag="hello"):
    hostname: str
    cpus: int
    pid: int
    python: str = ""
    address: str | None = None
    dialed: str | None = None
    command: list[str] | None = None  # the node's own rank command (AWS Batch: the node range's container command)
    fabric: dict[str, object] = {}
    relay: str | None = None  # where this node's children in the control tree dial it (tcp://address:port)


class Started(_Msg, frozen=True, tag="started"):
    pids: dict[int, int]


class Output(_Msg, frozen=True, tag="output"):
    rank: int
    stream: Stream


class Exit(_Msg, frozen=True, tag="exit"):
    rank: int
    code: int
    signal: str | None = None
    reason: str = ""


class ProcessStarted(_Msg, frozen=True, tag="process_started"):
    name: str
    pid: int


class ProcessHealth(_Msg, frozen=True, tag="process_health"):
    """A process's health check passed (``healthy``) or failed ``retries`` times in a row."""

    name: str
    healthy: bool


class ProcessOutput(_Msg, frozen=True, tag="process_output"):
    name: str
    stream: Stream


class ProcessExit(_Msg, frozen=True, tag="process_exit"):
    """A process ended (``started``), or will never start (``reason`` says why: a failed start, a dependency
    that can never be met)."""

    name: str
    code: int
    signal: str | None = None
    reason: str = ""
    started: bool = True


class Barrier(_Msg, frozen=True, tag="barrier"):
    puts: dict[str, str]


class Abort(_Msg, frozen=True, tag="abort"):
    rank: int
    code: int
    message: str = ""


class Heartbeat(_Msg, frozen=True, tag="heartbeat"):
    pass


class Bye(_Msg, frozen=True, tag="bye"):
    maxrss_kb: int | None = None
    shm_removed: list[str] = []
    cpu_s: float | None = None  # the agent's own CPU time (user + system), start to goodbye


class ExecOutput(_Msg, frozen=True, tag="exec_output"):
    id: str
    stream: Stream


class ExecExit(_Msg, frozen=True, tag="exec_exit"):
    id: str
    code: int


class Rexec(_Msg, frozen=True, tag="rexec"):
    """The launcher on this node asks for ``command`` on ``host`` (its remote shell, ``mnp-rsh``)."""

    id: str
    host: str
    command: str


class RexecKill(_Msg, frozen=True, tag="rexec_kill"):
    id: str


class ShmRemounted(_Msg, frozen=True, tag="shm_remounted"):
    total: int
    free: int
    error: str = ""


class NodeFailed(_Msg, frozen=True, tag="node_failed"):
    """A relay's child (``node``, on host ``name``) could not be started (``started`` False: unreachable, its
    preflight failed) or its session ended; ``problem`` is one line."""

    node: int
    name: str
    problem: str
    started: bool = False


class Telemetry(_Msg, frozen=True, tag="telemetry"):
    """One sample of the job's processes on this node (:mod:`mnp.node.telemetry` says what each figure counts):
    ``cpu_pct`` (100 = one core busy) over the last interval, ``cpu_s`` used so far, ``rss`` resident private
    bytes, ``shm`` bytes used in /dev/shm, ``procs`` processes seen, ``cost_s`` what the sample pass took."""

    cpu_pct: Annotated[float, msgspec.Meta(ge=0, le=1e6)]
    cpu_s: Annotated[float, msgspec.Meta(ge=0, le=1e12)]
    rss: Annotated[int, msgspec.Meta(ge=0)]
    shm: Annotated[int, msgspec.Meta(ge=0)]
    procs: Annotated[int, msgspec.Meta(ge=0)]
    cost_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 0.0


ToAgent: TypeAlias = (Start | Stdin | BarrierDone | Kill | Ping | Shutdown | Exec | ExecKill | RexecOutput
                      | RexecExit | RemountShm | PeerProcess)
ToCoordinator: TypeAlias = (Hello | Started | Output | Exit | Barrier | Abort | Heartbeat | Bye | ExecOutput | ExecExit
                            | Rexec | RexecKill | ShmRemounted | Telemetry | ProcessStarted | ProcessHealth
                            | ProcessOutput | ProcessExit | NodeFailed)


class InvalidMessage(msgspec.Struct, frozen=True):
    """A frame that did not decode as a message this side may receive; ``why`` is one line for the log."""

    why: str


_encoder = msgspec.json.Encoder()
_to_agent = msgspec.json.Decoder(ToAgent)
_to_coordinator = msgspec.json.Decoder(ToCoordinator)


def encode(msg: ToAgent | ToCoordinator) -> bytes:
    return _encoder.encode(msg)


def decode_frame(decoder: msgspec.json.Decoder, frame: bytes, limit: int = MAX_FRAME) -> object:
    """``frame`` decoded by ``decoder``, or :class:`InvalidMessage` saying why not: never an exception, whatever
    a peer sends (a free-form field nested deeper than the decoder goes included)."""
    if len(frame) > limit:
        return InvalidMessage(f"frame of {len(frame)} bytes is over the {limit}-byte limit")
    try:
        return decoder.decode(frame)
    except msgspec.DecodeError as e:  # ValidationError is a DecodeError
        return InvalidMessage(str(e).splitlines()[0][:200] or type(e).__name__)
    except (RecursionError, MemoryError, ValueError) as e:
        return InvalidMessage(f"undecodable ({type(e).__name__})")





def decode_to_agent(frame: bytes) -> ToAgent | InvalidMessage:
    return decode_frame(_to_agent, frame)  # type: ignore[return-value]


def decode_to_coordinator(frame: bytes) -> ToCoordinator | InvalidMessage:
    return decode_frame(_to_coordinator, frame)  # type: ignore[return-value]
