"""The telemetry sidecar: polls the maze server's /stats and prints each change (non-essential: it may fail
without failing the job, and it is stopped when the job's work is done)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

HOST = os.environ.get("MAZE_HOST") or os.environ.get("MNP_MAIN_NODE_ADDR") or "127.0.0.1"
URL = f"http://{HOST}:{os.environ.get('MAZE_PORT', '8642')}/stats"
EVERY = float(os.environ.get("TELEMETRY_EVERY", "0.2"))

last = None
while True:
    try:
        with urllib.request.urlopen(URL, timeout=2) as r:
            stats = json.loads(r.read())
        if stats != last:
            print("telemetry: " + json.dumps(stats, sort_keys=True), flush=True)
            last = stats
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        pass  # not up yet, or warming up (503)
    time.sleep(EVERY)
