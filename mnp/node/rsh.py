"""``mnp-rsh HOST COMMAND...``: the remote-shell agent mnp gives mpirun (Open MPI/PRRTE) and mpiexec (Hydra).

Launchers start their daemons with ``ssh HOST COMMAND``. Under mnp they call this instead: the request goes to the
main node's agent (``$MNP_RSH_SOCKET``), through mnp's authenticated control plane, to the agent of HOST, which
runs COMMAND with that node's environment. Output and exit status come back as ssh would give them, so the
launcher cannot tell the difference -- and no SSH keys, sshd or host keys are needed between nodes.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys

__all__ = ["main", "parse_args"]

# ssh options that take a value (so their value is not taken for the host)
_WITH_VALUE = set("bcDEeFIiJLlmOopQRSWw")


def parse_args(argv: list[str]) -> tuple[str, str]:
    """``[ssh options] HOST WORDS...`` -> (host, command). The words are joined as ssh joins them."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        opt = argv[i]
        i += 2 if len(opt) == 2 and opt[1] in _WITH_VALUE else 1
    if i >= len(argv):
        raise SystemExit("mnp-rsh: usage: mnp-rsh [ssh options] HOST COMMAND...")
    host, words = argv[i], argv[i + 1:]
    if "@" in host:
        host = host.split("@", 1)[1]
    return host, " ".join(words)


def main() -> None:
    host, command = parse_args(sys.argv[1:])
    path = os.environ.get("MNP_RSH_SOCKET")
    if not path:
        sys.stderr.write("mnp-rsh: MNP_RSH_SOCKET is not set (mnp-rsh only works under an mnp job)\n")
        sys.exit(255)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        sys.stderr.write(f"mnp-rsh: cannot reach the node agent at {path}: {e.strerror}\n")
        sys.exit(255)
    s.sendall(json.dumps({"host": host, "command": command}).encode() + b"\n")
    f = s.makefile("rb")
    out, err = sys.stdout.buffer, sys.stderr.buffer
    while True:
        head = f.read(5)
        if len(head) < 5:
            sys.stderr.write(f"mnp-rsh: connection to {host} lost\n")
            sys.exit(255)
        kind, n = struct.unpack("!BI", head)
        payload = f.read(n)
        if kind == 3:
            sys.exit(int(payload))
        target = out if kind == 1 else err
        target.write(payload)
        target.flush()


if __name__ == "__main__":
    main()
