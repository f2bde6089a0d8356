"""The explorer: solves the maze through the server's HTTP API by depth-first search, then exits 0.

It finds the server at MAZE_HOST (default: the main node's address, MNP_MAIN_NODE_ADDR, which is also
AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS on the other nodes) and MAZE_PORT, and retries while the server
is not up yet (connection refused) or answers 503 (warming up), for at most MAZE_WAIT seconds (30).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request

BACK = {"N": "S", "S": "N", "E": "W", "W": "E"}
HOST = os.environ.get("MAZE_HOST") or os.environ.get("MNP_MAIN_NODE_ADDR") or "127.0.0.1"
BASE = f"http://{HOST}:{os.environ.get('MAZE_PORT', '8642')}"
DEADLINE = time.monotonic() + float(os.environ.get("MAZE_WAIT", "30"))


def call(method: str, path: str) -> dict[str, object]:
    """One request, retried while the server is not there yet or warming up (503 + Retry-After)."""
    waited = 0
    while True:
        try:
            req = urllib.request.Request(BASE + path, method=method)
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as e:
            if e.code != 503:
                raise
            pause = min(float(e.headers.get("Retry-After", "1")), 0.2)
        except (urllib.error.URLError, ConnectionError):
            pause = 0.2
        if time.monotonic() > DEADLINE:
            sys.exit(f"explorer: no maze at {BASE} after waiting {waited} times")
        waited += 1
        if waited == 1:
            print(f"explorer: {BASE} not ready yet; retrying", flush=True)
        time.sleep(pause)


def solve() -> int:
    """Depth-first search with backtracking over the API; returns the number of moves."""
    view = call("GET", "/look")
    seen = {tuple(view["position"])}  # type: ignore[arg-type]
    path: list[str] = []
    moves = 0
    while not view["solved"]:
        pos = view["position"]
        step = None
        for d in view["open"]:  # type: ignore[attr-defined]
            dx, dy = {"N": (0, -1), "E": (1, 0), "S": (0, 1), "W": (-1, 0)}[d]
            if (pos[0] + dx, pos[1] + dy) not in seen:  # type: ignore[index]
                step = d
                break
        if step is None:
            step = BACK[path.pop()]  # dead end: go back
        else:
            path.append(step)
        view = call("POST", f"/move?dir={step}")
        seen.add(tuple(view["position"]))  # type: ignore[arg-type]
        moves += 1
    return moves


if __name__ == "__main__":
    n = solve()
    print(f"explorer: solved the maze in {n} moves", flush=True)
