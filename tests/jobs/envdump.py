"""Test job: every rank prints one JSON line with what it sees (MPI rank/size, hostname, env contract)."""

import json
import os
import socket

from mpi4py import MPI

KEYS = ["MNP_JOB_ID", "MNP_NODE_INDEX", "MNP_NUM_NODES", "MNP_MAIN_NODE_INDEX", "MNP_MAIN_NODE_ADDR",
        "MNP_LOCAL_RANK", "MNP_ATTEMPT", "AWS_BATCH_JOB_NODE_INDEX", "AWS_BATCH_JOB_NUM_NODES",
        "AWS_BATCH_JOB_MAIN_NODE_INDEX", "AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS", "AWS_BATCH_JOB_ID",
        "AWS_BATCH_JOB_ATTEMPT", "PMI_RANK", "PMI_SIZE", "FI_PROVIDER", "MPIR_CVAR_CH4_NETMOD", "USER_VAR"]
comm = MPI.COMM_WORLD
total = comm.allreduce(1)
print("ENV " + json.dumps({"rank": comm.Get_rank(), "size": comm.Get_size(), "sum": total,
                           "host": socket.gethostname(), "env": {k: os.environ.get(k) for k in KEYS}}))
