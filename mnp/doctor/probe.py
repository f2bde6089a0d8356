"""The program ``mnp doctor`` runs: ``python -m mnp.doctor.probe``, one rank per node.

Every rank reads its node's facts (:func:`probe_facts`, before ``MPI_Init``) and gathers them to rank 0. Then, for
every node pair ``i < j`` in turn, ranks i and j run an 8-byte pingpong while every other rank sleeps. Pairs run
one after another: the initiator of a pair, when it is done, sends a token to whichever members of the next pair
were not in it, and a rank waiting for its turn polls a non-blocking receive with short sleeps -- a blocking MPI
wait spins a core, and 30 spinning ranks on a small machine would measure the scheduler, not the network. No
collective runs until every pair is done (the last pair's initiator says so): a collective would open
connections to ranks that are asleep.

The responder echoes its own ``time.time()`` in the 8 bytes, so the pairs with rank 0 double as an NTP-like
exchange: node j's offset is ``t_j - (t_send + t_recv) / 2`` from its round trip with the smallest delay.
Pairs slower than :data:`~mnp.doctor.probe_data.SLOW_FACTOR` x the median are measured once more and keep the
faster result, so a burst of load elsewhere on a shared machine is not reported as a slow link.

Rank 0 prints one line, ``MNP-PROBE <json>``: ``nodes`` (facts), ``clock`` (per node: offset from node 0 and
the round trip it was read from, in seconds), ``latency_us`` (half round trip, median of the timed round trips;
``null`` on the diagonal), ``first_ms`` (each pair's first message, connection set-up included) and
``remeasured`` (``[i, j, first result]``). mpi4py is imported in :func:`main`.
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


def probe_facts() -> dict[str, Any]:
    """This node's facts: what its agent tells the coordinator (:func:`mnp.fabric.decide.node_facts`, interfaces
    included), and what the doctor compares across nodes (hostname, clock, Python, mnp, CPUs)."""
    from mnp import __version__
    from mnp.fabric.decide import node_facts

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return {"hostname": socket.gethostname(), "time": time.time(), "python": sys.version, "mnp": __version__,
            "cpus": cpus, **node_facts(report_ifaces=True)}


def pair_schedule(n: int) -> list[tuple[int, int]]:
    """Every pair ``(i, j)``, ``i < j``, in the order they run: consecutive pairs share a node where they can."""
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def _sleep_wait(req: Any, cap: float = 1e-3) -> None:
    """Wait for a request without spinning: poll, sleeping 20 us doubling to ``cap``."""
    nap = 20e-6
    while not req.Test():
        time.sleep(nap)
        nap = min(nap * 2, cap)


def _initiate(comm: Any, peer: int, budget_s: float) -> tuple[float, float, float, float]:
    """Pingpong with ``peer``: (median half round trip in us, first round trip in s, clock offset of the peer in
    s and the round trip it was read from, in s)."""
    from array import array

    out, back = array("d", [0.0]), array("d", [0.0])
    first = time.perf_counter()
    for k in range(WARMUP):
        comm.Send(out, peer, PING)
        comm.Recv(back, peer, PING)
        if k == 0:
            first = time.perf_counter() - first
    trips: list[float] = []
    best = (float("inf"), 0.0)  # (round trip, offset) of the fastest exchange
    deadline = time.perf_counter() + budget_s
    while len(trips) < MAX_TRIPS and (len(trips) < MIN_TRIPS or time.perf_counter() < deadline):
        t0, p0 = time.time(), time.perf_counter()
        out[0] = t0
        comm.Send(out, peer, PING)
        comm.Recv(back, peer, PING)
        p1, t1 = time.perf_counter(), time.time()
        trips.append(p1 - p0)
        if t1 - t0 < best[0]:
            best = (t1 - t0, back[0] - (t0 + t1) / 2)
    comm.Send(out, peer, STOP)
    trips.sort()
    return trips[len(trips) // 2] / 2 * 1e6, first, best[1], best[0]


def _respond(comm: Any, peer: int) -> None:
    from array import array

    from mpi4py import MPI

    buf, mine, status = array("d", [0.0]), array("d", [0.0]), MPI.Status()
    while True:
        comm.Recv(buf, peer, MPI.ANY_TAG, status)
        if status.Get_tag() == STOP:
            return
        mine[0] = time.time()
        comm.Send(mine, peer, PING)


def _run_pairs(comm: Any, pairs: list[tuple[int, int]], budget_s: float) -> tuple[dict[Any, Any], ...]:
    """Run ``pairs`` one after another; this rank's (latency us, first contact s, clock) by pair / peer."""
    from array import array

    rank, size = comm.Get_rank(), comm.Get_size()
    lat: dict[tuple[int, int], float] = {}
    first: dict[tuple[int, int], float] = {}  # the pair's first messages: token and first round trip
    clock: dict[int, tuple[float, float]] = {}
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
        lat[i, j], once, offset, rtt = _initiate(comm, j, budget_s)
        first[i, j] = first.get((i, j), 0.0) + once
        if i == 0:
            clock[j] = (offset, rtt)
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
    return lat, first, clock


def main() -> int:
    facts = probe_facts()  # before MPI_Init: its own /dev/shm segment is not the node's to count

    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    facts["mpi"] = " ".join(MPI.Get_library_version().strip().splitlines()[0].split())
    every = comm.gather(facts, root=0)
    pairs = pair_schedule(size)
    budget = min(0.02, max(0.001, MATRIX_BUDGET_S / max(1, len(pairs))))
    results = comm.gather(_run_pairs(comm, pairs, budget), root=0)
    latency: list[list[float | None]] = [[None] * size for _ in range(size)]
    first_ms: list[list[float | None]] = [[None] * size for _ in range(size)]
    offsets = [{"offset_s": 0.0, "rtt_s": 0.0} for _ in range(size)]
    for lat, firsts, clk in results or []:
        for (i, j), us in lat.items():
            latency[i][j] = latency[j][i] = round(us, 3)
        for (i, j), s in firsts.items():
            first_ms[i][j] = first_ms[j][i] = round((first_ms[i][j] or 0.0) + s * 1e3, 3)
        for j, (off, rtt) in clk.items():
            offsets[j] = {"offset_s": off, "rtt_s": rtt}
    again = comm.bcast([(i, j) for i, j, _ in slow_pairs(latency)] if rank == 0 else None, root=0)
    remeasured = [[i, j, latency[i][j]] for i, j in again] if rank == 0 else []
    if again:
        for lat, _, _ in comm.gather(_run_pairs(comm, again, budget), root=0) or []:
            for (i, j), us in lat.items():
                latency[i][j] = latency[j][i] = round(min(us, latency[i][j] or us), 3)
    if rank != 0:
        return 0
    out = {"size": size, "nodes": every, "clock": offsets, "latency_us": latency, "first_ms": first_ms,
           "remeasured": remeasured}
    sys.stdout.write(PREFIX + json.dumps(out, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
