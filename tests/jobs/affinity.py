"""Print where this rank runs, as one JSON line: its rank and node, the CPUs it may use, its node's CPUs (the
affinity of the node's init, pid 1 in the node's PID namespace) and each of its CPUs' core siblings. With
AFFINITY_MPI set, after MPI_Init."""

import json
import os
from pathlib import Path

if os.environ.get("AFFINITY_MPI"):  # MPI_Init first: a library that pins ranks would have done it by now
    from mpi4py import MPI  # noqa: F401


def siblings(cpu: int) -> list[int]:
    text = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip()
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


mine = sorted(os.sched_getaffinity(0))
print("AFFINITY " + json.dumps({"rank": int(os.environ["MNP_RANK"]), "node": int(os.environ["MNP_NODE_INDEX"]),
                                "cpus": mine, "node_cpus": sorted(os.sched_getaffinity(1)),
                                "siblings": {c: siblings(c) for c in mine}}), flush=True)
