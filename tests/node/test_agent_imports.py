"""What a node agent imports before its hello, in a fresh interpreter: not the modules it was made not to need
(each is a cost on every node's start-up, which is launch time), and psutil only once telemetry takes its first
sample, once the job's first process runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.noroot

# what only the coordinator, a launcher's nodes, named processes or an EFA node need
NOT_AT_START = ["mnp.fabric.decide", "mnp.fabric.transport", "mnp.placement", "mnp.launch.daemons", "mnp.cluster.base",
                "shlex", "shutil", "tempfile", "psutil"]

PROBE = f"""
import json, socket, sys, time
import mnp.cluster.ssh_task
from mnp.node import agent
agent.node_facts(False)
sampler = agent.Sampler.from_handoff({{"telemetry_s": 1}})
start = [m for m in {NOT_AT_START!r} if m in sys.modules]
sampler.arm(time.monotonic() - 1)  # the job's first process started a while ago
sampler.poll(time.monotonic())
print(json.dumps({{"start": start, "psutil_after_poll": "psutil" in sys.modules}}))
"""


def test_agent_start_imports_none_of_what_it_does_not_need() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60)
    got = json.loads(out.stdout)
    assert got["start"] == []
    assert got["psutil_after_poll"]  # telemetry still samples: its first pass imports psutil
