#!/usr/bin/env python3
"""Hydra's remote-shell agent for the launch benchmark: ``hydra_node_exec.py [-x] HOST WORDS...``.

mpiexec calls its ``-launcher-exec`` like ssh. This starts WORDS (joined and run by a shell, as sshd would) as the
init of the isolated local node whose address is HOST, so Hydra's proxies run on the same kind of nodes as mnp's
agents. The node wrappers come from ``$MNP_BENCH_NODES`` (a JSON file: address -> argv prefix).
"""

import json
import os
import sys
from pathlib import Path

args = sys.argv[1:]
while args and args[0].startswith("-"):
    args = args[1:]
host, words = args[0], args[1:]
prefix = json.loads(Path(os.environ["MNP_BENCH_NODES"]).read_text())[host]
os.execvp(prefix[0], [*prefix, "/bin/sh", "-c", " ".join(words)])
