"""Test job: look for the job secret (argv[1]) where a rank can read: its own environment and the environment of
every process it can see (/proc/PID/environ). Prints one line: SECRET-SCAN <json list of places found>."""

import json
import os
import sys

needle = sys.argv[1].encode()
found = [f"own env {k}" for k, v in os.environ.items() if k == "MNP_JOB_SECRET" or needle in v.encode()]
for pid in (p for p in os.listdir("/proc") if p.isdigit()):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        continue
    if needle in data or b"MNP_JOB_SECRET=" in data:
        found.append(f"/proc/{pid}/environ")
print("SECRET-SCAN " + json.dumps(found), flush=True)
