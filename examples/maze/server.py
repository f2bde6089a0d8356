"""The maze model, served over HTTP (stdlib only): a random maze from a seed, one explorer at a time.

GET /look  -> {"position": [x, y], "open": ["N", "E", ...], "solved": bool}
POST /move?dir=N|E|S|W -> {"moved": bool, "position": [x, y], "solved": bool}
GET /stats -> {"moves": n, "looks": n, "solved": bool, "size": [w, h]}
For the first MAZE_WARMUP seconds every request gets 503 with Retry-After (the model is "warming up").
Settings: MAZE_PORT (8642), MAZE_SEED (7), MAZE_SIZE (12), MAZE_WARMUP (1.0).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

STEPS = {"N": (0, -1), "E": (1, 0), "S": (0, 1), "W": (-1, 0)}


def carve(size: int, seed: int) -> dict[tuple[int, int], set[str]]:
    """A perfect maze (one path between any two cells) by a randomised depth-first search."""
    rng = random.Random(seed)
    opened: dict[tuple[int, int], set[str]] = {(x, y): set() for x in range(size) for y in range(size)}
    back = {"N": "S", "S": "N", "E": "W", "W": "E"}
    stack, seen = [(0, 0)], {(0, 0)}
    while stack:
        x, y = stack[-1]
        choices = [(d, (x + dx, y + dy)) for d, (dx, dy) in STEPS.items() if (x + dx, y + dy) in opened
                   and (x + dx, y + dy) not in seen]
        if not choices:
            stack.pop()
            continue
        d, cell = rng.choice(choices)
        opened[(x, y)].add(d)
        opened[cell].add(back[d])
        seen.add(cell)
        stack.append(cell)
    return opened


class Maze:
    def __init__(self, size: int, seed: int, warmup: float) -> None:
        self.size, self.cells = size, carve(size, seed)
        self.ready_at = time.monotonic() + warmup
        self.pos, self.goal = (0, 0), (size - 1, size - 1)
        self.moves = self.looks = 0
        self.lock = threading.Lock()

    def view(self) -> dict[str, object]:
        return {"position": list(self.pos), "open": sorted(self.cells[self.pos]), "solved": self.pos == self.goal}


class Handler(BaseHTTPRequestHandler):
    maze: Maze

    def _send(self, code: int, body: dict[str, object], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        m, url = self.maze, urlparse(self.path)
        if time.monotonic() < m.ready_at:
            self._send(503, {"error": "warming up"}, {"Retry-After": "1"})
            return
        with m.lock:
            if method == "GET" and url.path == "/look":
                m.looks += 1
                self._send(200, m.view())
            elif method == "POST" and url.path == "/move":
                d = parse_qs(url.query).get("dir", [""])[0]
                moved = d in m.cells[m.pos]
                if moved:
                    dx, dy = STEPS[d]
                    m.pos = (m.pos[0] + dx, m.pos[1] + dy)
                    m.moves += 1
                self._send(200 if d in STEPS else 400, {"moved": moved, **m.view()})
            elif method == "GET" and url.path == "/stats":
                self._send(200, {"moves": m.moves, "looks": m.looks, "solved": m.pos == m.goal,
                                 "size": [m.size, m.size]})
            else:
                self._send(404, {"error": f"no {method} {url.path}"})

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def log_message(self, *args: object) -> None:  # one line per request would drown the job's output
        pass


def main() -> None:
    port = int(os.environ.get("MAZE_PORT", "8642"))
    Handler.maze = Maze(int(os.environ.get("MAZE_SIZE", "12")), int(os.environ.get("MAZE_SEED", "7")),
                        float(os.environ.get("MAZE_WARMUP", "1.0")))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    print(f"maze {Handler.maze.size}x{Handler.maze.size} (seed {os.environ.get('MAZE_SEED', '7')}) on port {port}",
          flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
