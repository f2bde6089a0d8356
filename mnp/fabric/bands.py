"""What each path between two ranks should cost, and which path a pair of ranks really used.

A *path* is how two ranks' messages travel:

- ``shm``: two ranks of one node, through the MPI's shared memory;
- ``tcp-host``: TCP between nodes that are one machine (namespaces or containers joined by veth and a bridge,
  or plain processes on loopback) -- the kernel's network stack without a wire;
- ``tcp``: TCP between machines;
- ``efa``: AWS EFA between machines (OS bypass: no network interface counts its packets).

**Bands.** An 8-byte pingpong, half round trip, as the doctor's probe measures it (mpi4py ``Send``/``Recv`` of an
8-byte buffer, the median of at least 30 timed round trips). ``typical`` is where a healthy path lies, from
published figures (``shared/notes/benchmarks.md``) plus the probe's Python cost; ``ceiling`` is the slowest figure
that is still that path working -- a factor of about 10 above typical, because shared machines are noisy, and
still far below what a broken path costs (a core shared by the pair: ~4,000 us; a congested or shaped link: ms):

- ``shm``: published 0.22-0.35 us in C (libfabric shm/sm2, Open MPI vader); the mpi4py buffer path adds 0.5-1.7 us
  (measured 0.7-1.6 us through mnp, 1 node x 2 ranks): typical 0.2-2 us, ceiling 20 us.
- ``tcp-host``: measured through ``mnp launch`` between two isolated local nodes: MPICH ch4:ofi tcp 3.3-8.5 us,
  Open MPI 5 ob1/tcp 10.2 us, Intel MPI 5.9 us, + up to 2 us of Python: typical 3-12 us, ceiling 100 us.
- ``tcp``: kernel TCP through one Ethernet switch is tens of microseconds (no figure in the notes; this is mnp's
  assumption, not a published one): typical 10-60 us, ceiling 500 us.
- ``efa``: published osu_latency 0-8 B: hpc6a Intel MPI 9.9 us, c5n Open MPI 17.23 us, Intel MPI 22.25 us; + 2 us
  of Python: typical 10-25 us, ceiling 100 us.

Calibrate at install, or for other hardware: ``MNP_LATENCY_BANDS="shm=20,tcp-host=100,tcp=500,efa=100"`` (ceilings
in microseconds; any subset) replaces those ceilings.

**Which path was used** is read from counters, not assumed: around its timed round trips the probe's initiating
rank reads its node's per-interface packet counters (``/proc/self/net/dev``, which is the rank's own network
namespace) and the RDMA devices' ``hw_counters`` (``/sys/class/infiniband/*/ports/*/hw_counters``). Every round
trip over TCP moves at least two packets through an interface (one each way; loopback counts each twice), so an
interface that moved at least half as many packets as there were round trips carried the pair: ``lo`` within a
node means TCP where shared memory was expected, a network interface between EFA nodes means a silent fallback to
TCP. Background traffic (mnp's heartbeats: one a second) is far below that over a pingpong of milliseconds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["BANDS", "PATHS", "Band", "PathVerdict", "bands", "expected_path", "judge_path", "observed_path",
           "read_counters"]

PATHS = ("shm", "tcp-host", "tcp", "efa")


@dataclass(frozen=True)
class Band:
    path: str
    typical: tuple[float, float]  # us
    ceiling: float  # us
    what: str

    def describe(self) -> str:
        lo, hi = self.typical
        return f"{self.path} band (<= {self.ceiling:g} us; typical {lo:g}-{hi:g} us: {self.what})"


BANDS: dict[str, Band] = {
    "shm": Band("shm", (0.2, 2.0), 20.0, "shared memory within a node"),
    "tcp-host": Band("tcp-host", (3.0, 12.0), 100.0, "TCP between nodes on one machine"),
    "tcp": Band("tcp", (10.0, 60.0), 500.0, "TCP between machines"),
    "efa": Band("efa", (10.0, 25.0), 100.0, "EFA between machines"),
}

ENV = "MNP_LATENCY_BANDS"


def bands(environ: Mapping[str, str] | None = None) -> dict[str, Band]:
    """The bands, with ceilings from ``MNP_LATENCY_BANDS`` (``path=us,...``) where given. Bad entries raise
    ``ValueError`` naming them."""
    env = os.environ if environ is None else environ
    out = dict(BANDS)
    for item in (env.get(ENV) or "").split(","):
        if not item.strip():
            continue
        name, _, value = item.partition("=")
        name = name.strip()
        try:
            ceiling = float(value)
        except ValueError:
            ceiling = -1.0
        if name not in out or not 0 < ceiling < float("inf"):
            raise ValueError(f"{ENV}: '{item.strip()}' is not PATH=MICROSECONDS with PATH one of {', '.join(PATHS)}")
        b = out[name]
        out[name] = Band(b.path, b.typical, ceiling, b.what + f", ceiling from {ENV}")
    return out


def expected_path(same_node: bool, same_machine: bool, inter_node: str) -> str:
    """The path a pair should use: shared memory within a node; else the job's inter-node transport, TCP being
    ``tcp-host`` between nodes that are one machine."""
    if same_node:
        return "shm"
    if inter_node == "efa":
        return "efa"
    return "tcp-host" if same_machine else "tcp"


def read_counters() -> dict[str, int]:
    """Packets (received + sent) per network interface of this network namespace, and per RDMA port as
    ``rdma:<device>/<port>`` where the device exports ``hw_counters``. Missing files are simply absent."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        lines = []
    for ln in lines:
        name, _, rest = ln.partition(":")
        cols = rest.split()
        if len(cols) >= 10:
            out[name.strip()] = int(cols[1]) + int(cols[9])
    base = "/sys/class/infiniband"
    try:
        devices = os.listdir(base)
    except OSError:
        devices = []
    for dev in devices:
        try:
            ports = os.listdir(f"{base}/{dev}/ports")
        except OSError:
            continue
        for port in ports:
            total, seen = 0, False
            for name in ("rx_pkts", "tx_pkts"):
                try:
                    with open(f"{base}/{dev}/ports/{port}/hw_counters/{name}") as f:
                        total += int(f.read().strip() or 0)
                        seen = True
                except (OSError, ValueError):
                    pass
            if seen:
                out[f"rdma:{dev}/{port}"] = total
    return out


def observed_path(deltas: Mapping[str, int], trips: int) -> tuple[str, str]:
    """(path, evidence) from counter deltas over ``trips`` round trips: ``rdma`` when an RDMA port carried them,
    ``tcp:<iface>`` when a network interface did, ``none`` when no counter did (shared memory, or a device that
    exports no counters)."""
    need = max(4, trips // 2)
    rdma = {k: v for k, v in deltas.items() if k.startswith("rdma:")}
    net = {k: v for k, v in deltas.items() if not k.startswith("rdma:")}
    top_rdma = max(rdma.items(), key=lambda kv: kv[1], default=("", 0))
    top_net = max(net.items(), key=lambda kv: kv[1], default=("", 0))
    if top_rdma[1] >= need and top_rdma[1] >= top_net[1]:
        return "rdma", f"{top_rdma[1]} packets on {top_rdma[0][5:]} for {trips} round trips"
    if top_net[1] >= need:
        return f"tcp:{top_net[0]}", f"{top_net[1]} packets on {top_net[0]} for {trips} round trips"
    moved = sum(v for v in deltas.values() if v > 0)
    return "none", f"{moved} packets on any interface for {trips} round trips"


@dataclass(frozen=True)
class PathVerdict:
    expected: str
    observed: str  # "shm" | "efa" | "tcp:<iface>" | "none" (nothing counted) | "unknown" (no counters read)
    ok: bool
    why: str
    evidence: str = ""


def judge_path(expected: str, observed: str, evidence: str, iface: str | None = None) -> PathVerdict:
    """Is ``observed`` (from :func:`observed_path`) the ``expected`` path? TCP where shared memory or EFA was
    expected is a failure with its reason; so is TCP on another interface than the one pinned (``iface``)."""
    v = _judge(expected, observed, evidence, iface)
    return PathVerdict(v.expected, v.observed, v.ok, v.why, evidence)


def _judge(expected: str, observed: str, evidence: str, iface: str | None) -> PathVerdict:
    if observed == "unknown":
        return PathVerdict(expected, observed, True, "not checked: no counters were read")
    on_tcp = observed.startswith("tcp:")
    dev = observed[4:] if on_tcp else ""
    if expected == "shm":
        if on_tcp:
            return PathVerdict(expected, observed, False, f"TCP over {dev} where shared memory was expected "
                               f"({evidence}): the MPI's shared-memory transport is off or failed")
        return PathVerdict(expected, "shm", True, f"shared memory ({evidence})")
    if expected == "efa":
        if on_tcp:
            return PathVerdict(expected, observed, False, f"TCP over {dev} where EFA was expected ({evidence}): "
                               "a silent fallback from EFA to TCP")
        return PathVerdict(expected, "efa", True, f"EFA ({evidence})" if observed == "rdma" else
                           f"EFA, as far as counters tell ({evidence}; no EFA counters read)")
    # tcp / tcp-host
    if on_tcp:
        if iface and dev != iface and not (dev == "lo" and expected == "tcp-host"):
            return PathVerdict(expected, observed, False, f"TCP over {dev}, not over {iface}, the interface "
                               f"pinned ({evidence})")
        return PathVerdict(expected, observed, True, f"TCP over {dev} ({evidence})")
    if expected == "tcp-host":  # nodes that are processes of one machine may share memory: faster, and fine
        return PathVerdict(expected, "shm", True, f"no network interface: shared memory between nodes on one "
                           f"machine ({evidence})")
    return PathVerdict(expected, observed, True, f"no network interface counted the messages ({evidence})")
