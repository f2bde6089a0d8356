"""The program ``mnp doctor`` runs: ``python -m mnp.doctor.probe``, one rank per node and a second on node 0.

Every rank reads its node's facts (:func:`probe_facts`, before ``MPI_Init``) and all ranks share them. The first
rank of each node (its *leader*) pingpongs 8 bytes with every other node's leader, and node 0's leader with the
second rank on node 0 when there is one: that pair is the shared-memory path. Pairs run one after another while
every other rank sleeps: the initiator of a pair, when it is done, sends a token to whichever members of the next
pair were not in it, and a rank waiting for its turn polls a non-blocking receive with short sleeps -- a blocking
MPI wait spins a core, and 30 spinning ranks on a small machine would measure the scheduler, not the network. No
collective runs until every pair is done (the last pair's initiator says so): a collective would open connections
to ranks that are asleep.

Around its timed round trips a pair's initiator reads its node's packet counters
(:func:`mnp.fabric.bands.read_counters`), so the analysis can say which path the messages really took.

The initiator sends 8 bytes; the responder answers with 16: its own ``time.time()`` and the CPU it runs on
(``sched_getcpu``). So the pairs with node 0 double as an NTP-like exchange (node j's offset is
``t_j - (t_send + t_recv) / 2`` from its round trip with the smallest delay), and a pair whose two ranks took turns
on one CPU -- ranks of different nodes bound to the same core, or other work crowding them together -- is known by
the round trips in which both were on the same CPU (``same_cpu``): its figure measures the scheduler.
Pairs slower than :data:`~mnp.doctor.probe_data.SLOW_FACTOR` x the median, or whose fastest tenth of round trips
is over the ceiling of the band their path could at best be in (:mod:`mnp.fabric.bands`), are measured once more
and keep the faster result, so a burst of load elsewhere on a shared machine is not reported as a slow link.

Rank 0 prints one line, ``MNP-PROBE <json>``: ``nodes`` (each node's leader's facts, by node), ``ranks`` (every
rank's node, CPUs and machine), ``clock`` (per node: offset from node 0 and the round trip it was read from, in
seconds), ``latency_us`` (node by node, half round trip, median of the timed round trips; the diagonal is the
shared-memory pair of node 0, ``null`` where not measured), ``pairs`` (each measurement: nodes, ranks, median and
10th-percentile half round trip, round trips, same-CPU round trips, counter deltas), ``first_ms`` (each pair's
first message, connection set-up included) and ``remeasured`` (``[i, j, first result]``). mpi4py is imported in
:func:`main`.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from typing import Any

from mnp.doctor.probe_data import PREFIX, slow_pairs

__all__ = ["main", "pair_schedule", "probe_facts"]

WARMUP = 10  # round trips before timing (the first one also opens the connection)
MIN_TRIPS = 30
MAX_TRIPS = 400
MATRIX_BUDGET_S = 0.5  # spread over all pairs; each pair gets 1 to 20 ms of timed round trips (>= MIN_TRIPS)
PING, STOP, TOKEN, DONE = 11, 12, 13, 14
Pair = tuple[int, int]


def probe_facts() -> dict[str, Any]:
    """This node's facts: what its agent tells the coordinator (:func:`mnp.fabric.decide.node_facts`, interfaces,
    CPUs and machine included), what the doctor compares across nodes (hostname, clock, Python, mnp), and which
    node this rank is on (``MNP_NODE_INDEX``)."""
    from mnp import __version__
    from mnp.fabric.decide import node_facts

    return {"hostname": socket.gethostname(), "time": time.time(), "python": sys.version, "mnp": __version__,
            "node": int(os.environ.get("MNP_NODE_INDEX", "-1")), **node_facts(report_ifaces=True)}


def pair_schedule(nodes: list[int]) -> list[Pair]:
    """The rank pairs to measure, in the order they run, from each rank's node: every two nodes' leaders (their
    first ranks), then node 0's leader with the second rank on node 0 if there is one (shared memory)."""
    leaders: dict[int, int] = {}
    for rank, node in enumerate(nodes):
        leaders.setdefault(node, rank)
    lead = [leaders[n] for n in sorted(leaders)]
    pairs = [(lead[a], lead[b]) for a in range(len(lead)) for b in range(a + 1, len(lead))]
    if nodes:
        second = next((r for r, n in enumerate(nodes) if n == nodes[lead[0]] and r != lead[0]), None)
        if second is not None:
            pairs.append((lead[0], second))
    return pairs


def _sleep_wait(req: Any, cap: float = 1e-3) -> None:
    """Wait for a request without spinning: poll, sleeping 20 us doubling to ``cap``."""
    nap = 20e-6
    while not req.Test():
        time.sleep(nap)
        nap = min(nap * 2, cap)


def _initiate(comm: Any, peer: int, budget_s: float) -> dict[str, Any]:
    """Pingpong with ``peer``: median half round trip (us), first round trip (s), the peer's clock offset (s) and
    the round trip it was read from (s), timed round trips, and the packet counters' deltas over them."""
    from array import array

    from mnp.fabric.bands import read_counters

    out, back = array("d", [0.0]), array("d", [0.0, -1.0])
    cpu = _cpu_reader()
    first = time.perf_counter()
    for k in range(WARMUP):
        comm.Send(out, peer, PING)
        comm.Recv(back, peer, PING)
        if k == 0:
            first = time.perf_counter() - first
    trips: list[float] = []
    best = (float("inf"), 0.0)  # (round trip, offset) of the fastest exchange
    same_cpu = 0  # round trips in which both ranks were on one CPU (same machine: CPU numbers compare)
    before = read_counters()
    deadline = time.perf_counter() + budget_s
    while len(trips) < MAX_TRIPS and (len(trips) < MIN_TRIPS or time.perf_counter() < deadline):
        t0, p0 = time.time(), time.perf_counter()
        out[0] = t0
        comm.Send(out, peer, PING)
        comm.Recv(back, peer, PING)
        p1, t1 = time.perf_counter(), time.time()
        trips.append(p1 - p0)
        same_cpu += back[1] >= 0 and cpu() == back[1]
        if t1 - t0 < best[0]:
            best = (t1 - t0, back[0] - (t0 + t1) / 2)
    after = read_counters()
    comm.Send(out, peer, STOP)
    n = len(trips)
    trips.sort()
    deltas = {k: v - before[k] for k, v in after.items() if k in before and v - before[k] > 0}
    return {"us": trips[n // 2] / 2 * 1e6, "p10_us": trips[n // 10] / 2 * 1e6, "first_s": first,
            "offset_s": best[1], "rtt_s": best[0], "trips": n, "same_cpu": same_cpu, "deltas": deltas}


def _cpu_reader() -> Any:
    """``sched_getcpu`` from the C library (the CPU this thread runs on now), or one that answers -1."""
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).sched_getcpu
        fn.restype = ctypes.c_int
        return fn
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return lambda: -1


def _respond(comm: Any, peer: int) -> None:
    from array import array

    from mpi4py import MPI

    buf, mine, status = array("d", [0.0]), array("d", [0.0, -1.0]), MPI.Status()
    cpu = _cpu_reader()
    while True:
        comm.Recv(buf, peer, MPI.ANY_TAG, status)
        if status.Get_tag() == STOP:
            return
        mine[0], mine[1] = time.time(), cpu()
        comm.Send(mine, peer, PING)


def _run_pairs(comm: Any, pairs: list[Pair], budget_s: float) -> tuple[dict[Pair, dict[str, Any]], dict[Pair, float]]:
    """Run ``pairs`` one after another; this rank's measurements (as initiator) and first-contact times by pair."""
    from array import array

    rank, size = comm.Get_rank(), comm.Get_size()
    results: dict[Pair, dict[str, Any]] = {}
    first: dict[Pair, float] = {}  # the pair's first messages: token and first round trip
    token = array("b", [0])
    for p, (i, j) in enumerate(pairs):
        if rank not in (i, j):
            continue
        prev = pairs[p - 1] if p else None
        if prev is not None and rank not in prev:  # wait for the previous pair to finish
            _sleep_wait(comm.Irecv(token, prev[0], TOKEN))
        if rank == j:
            _respond(comm, i)
            continue
        results[i, j] = r = _initiate(comm, j, budget_s)
        first[i, j] = first.get((i, j), 0.0) + r["first_s"]
        for k in pairs[p + 1] if p + 1 < len(pairs) else ():  # hand the turn on to the next pair's newcomers
            if k not in (i, j):
                t = time.perf_counter()
                comm.Send(token, k, TOKEN)
                key = (min(i, k), max(i, k))
                first[key] = first.get(key, 0.0) + time.perf_counter() - t
    if pairs:  # the last pair's initiator says when every pair is done
        last = pairs[-1][0]
        if rank == last:
            for k in range(size):
                if k != last:
                    comm.Send(token, k, DONE)
        else:
            _sleep_wait(comm.Irecv(token, last, DONE), 5e-3)
    return results, first


def _too_slow(pairs: dict[Pair, dict[str, Any]], every: list[dict[str, Any]]) -> list[Pair]:
    """Pairs worth a second measurement: slower than SLOW_FACTOR x the median of the inter-node pairs, or than the
    ceiling of the fastest band their path could be in."""
    from mnp.fabric.bands import bands

    try:
        ceil = {k: b.ceiling for k, b in bands().items()}
    except ValueError:  # a bad MNP_LATENCY_BANDS is the analysis's to report
        ceil = {k: b.ceiling for k, b in bands({}).items()}
    nodes = sorted({f["node"] for f in every})
    index = {n: k for k, n in enumerate(nodes)}
    matrix: list[list[float | None]] = [[None] * len(nodes) for _ in nodes]
    for (i, j), r in pairs.items():
        a, b = index[every[i]["node"]], index[every[j]["node"]]
        if a != b:
            matrix[a][b] = matrix[b][a] = r["us"]
    slow = {(a, b) for a, b, _ in slow_pairs(matrix)}
    out = []
    for (i, j), r in pairs.items():
        fi, fj = every[i], every[j]
        if fi["node"] == fj["node"]:
            limit = ceil["shm"]
        elif fi.get("boot_id") and fi.get("boot_id") == fj.get("boot_id"):
            limit = ceil["tcp-host"]
        else:
            limit = min(ceil["tcp"], ceil["efa"])
        a, b = sorted((index[fi["node"]], index[fj["node"]]))
        if r["p10_us"] > limit or (a, b) in slow:
            out.append((i, j))
    return out


def main() -> int:
    facts = probe_facts()  # before MPI_Init: its own /dev/shm segment is not the node's to count

    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    facts["mpi"] = " ".join(MPI.Get_library_version().strip().splitlines()[0].split())
    if facts["node"] < 0:  # not started by mnp: every rank is a node of its own
        facts["node"] = rank
    every = comm.allgather(facts)
    pairs = pair_schedule([f["node"] for f in every])
    budget = min(0.02, max(0.001, MATRIX_BUDGET_S / max(1, len(pairs))))
    measured: dict[Pair, dict[str, Any]] = {}
    firsts: dict[Pair, float] = {}
    for res, first in comm.gather(_run_pairs(comm, pairs, budget), root=0) or []:
        measured.update(res)
        firsts.update(first)
    again = comm.bcast(_too_slow(measured, every) if rank == 0 else None, root=0)
    remeasured = [[every[i]["node"], every[j]["node"], round(measured[i, j]["us"], 3)] for i, j in again] \
        if rank == 0 else []
    if again:
        for res, _ in comm.gather(_run_pairs(comm, again, budget), root=0) or []:
            for key, r in res.items():
                if r["us"] < measured[key]["us"]:
                    measured[key] = r
    if rank != 0:
        return 0
    sys.stdout.write(PREFIX + json.dumps(_output(every, measured, firsts, remeasured), separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return 0


def _output(every: list[dict[str, Any]], measured: dict[Pair, dict[str, Any]], firsts: dict[Pair, float],
            remeasured: list[list[Any]]) -> dict[str, Any]:
    nodes = sorted({f["node"] for f in every})
    index = {n: k for k, n in enumerate(nodes)}
    leaders = {f["node"]: f for f in reversed(every)}  # the first rank of each node wins
    n = len(nodes)
    latency: list[list[float | None]] = [[None] * n for _ in range(n)]
    first_ms: list[list[float | None]] = [[None] * n for _ in range(n)]
    offsets = [{"offset_s": 0.0, "rtt_s": 0.0} for _ in range(n)]
    pairs = []
    for (i, j), r in sorted(measured.items()):
        a, b = index[every[i]["node"]], index[every[j]["node"]]
        latency[a][b] = latency[b][a] = round(r["us"], 3)
        if a == 0 and b != 0:
            offsets[b] = {"offset_s": r["offset_s"], "rtt_s": r["rtt_s"]}
        pairs.append({"nodes": [a, b], "ranks": [i, j], "us": round(r["us"], 3), "p10_us": round(r["p10_us"], 3),
                      "trips": r["trips"], "same_cpu": r["same_cpu"], "deltas": r["deltas"]})
    for (i, j), s in firsts.items():
        a, b = index[every[i]["node"]], index[every[j]["node"]]
        first_ms[a][b] = first_ms[b][a] = round((first_ms[a][b] or 0.0) + s * 1e3, 3)
    ranks = [{"rank": r, "node": index[f["node"]], "cpus": f.get("cpus"), "cpu_list": f.get("cpu_list"),
              "boot_id": f.get("boot_id")} for r, f in enumerate(every)]
    return {"size": len(every), "nodes": [leaders[nd] for nd in nodes], "ranks": ranks, "clock": offsets,
            "latency_us": latency, "pairs": pairs, "first_ms": first_ms,
            "remeasured": [[index[a], index[b], us] for a, b, us in remeasured]}


if __name__ == "__main__":
    sys.exit(main())
