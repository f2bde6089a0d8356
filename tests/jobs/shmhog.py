"""A rank that holds MEM MiB of memory and an SHM MiB file in /dev/shm for SECONDS, then removes the file.

Usage: shmhog.py MEM SHM SECONDS (telemetry tests)."""

import os
import sys
import time

mem, shm, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
held = bytearray(mem << 20)
for i in range(0, len(held), 4096):  # touched: resident, not just reserved
    held[i] = 1
path = f"/dev/shm/mnp-shmhog-{os.getpid()}"
try:
    with open(path, "wb") as f:
        for _ in range(shm):
            f.write(b"\1" * (1 << 20))
    print(f"holding {mem} MiB and {shm} MiB in {path}", flush=True)
    time.sleep(seconds)
finally:
    if os.path.exists(path):
        os.unlink(path)
