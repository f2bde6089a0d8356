"""Test hosts that run a stock OpenSSH server: isolated local nodes (own network, UTS, IPC, PID, mount
namespaces) whose init is ``sshd -D``. Keys are made per fixture; nothing is written outside its directory."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from mnp.cluster.local import LocalCluster
from mnp.records import new_job_id

SSHD = "/usr/sbin/sshd"


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text().strip()


class SshNodes:
    """``n`` sshd hosts; ``up`` lists which get sshd, ``silent`` which get a listener on port 22 that accepts
    connections and never says a word (a hung sshd); the others are hosts with nothing listening."""

    def __init__(self, n: int, tmp: Path, up: list[int] | None = None, shm_bytes: int = 1 << 30,
                 silent: list[int] | None = None, quiet: bool = False) -> None:
        self.shm_bytes = shm_bytes
        self.quiet = quiet  # sshd logs nothing (a benchmark's output stays readable)
        self.tmp = tmp
        self.cluster = LocalCluster(new_job_id(), n)
        self.client_key = tmp / "id_ed25519"
        pub = keygen(self.client_key)
        (tmp / "authorized_keys").write_text(pub + "\n")
        self.host_pubs: list[str] = []
        self.up = set(range(n)) if up is None else set(up)
        self.silent = set(silent or ()) - self.up
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory

    def start(self) -> SshNodes:
        nodes = self.cluster.create(self.shm_bytes, init=self._init_for_create())
        self.addresses = [n.address for n in nodes]
        lines = []
        for i, n in enumerate(nodes):
            lines.append(f"{n.address} {self.host_pubs[i]}")
        self.known_hosts = self.tmp / "known_hosts"
        self.known_hosts.write_text("\n".join(lines) + "\n")
        self.ssh_config = self.tmp / "ssh_config"  # node names resolve only inside the nodes: map them here
        self.ssh_config.write_text("".join(f"Host node{i}\n    HostName {a}\n    User root\n"
                                           for i, a in enumerate(self.addresses)))
        for i in sorted(self.up | self.silent):
            self._wait_port(self.addresses[i])
        return self

    def _init_for_create(self):  # type: ignore[no-untyped-def]
        n = self.cluster.num_nodes
        configs = []
        for i in range(n):
            hk = self.tmp / f"hostkey{i}"
            self.host_pubs.append(" ".join(keygen(hk).split()[:2]))
            configs.append(hk)
        tmp = self.tmp
        up, silent = self.up, self.silent

        def init(node: int, _fd: int) -> int:
            addr = self.cluster.nodes[node].address
            if node in silent:  # accepts and holds every connection, answers nothing
                listener = socket.socket()
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind((addr, 22))
                listener.listen(64)
                held = []
                while True:
                    held.append(listener.accept()[0])
            if node not in up:  # a host whose sshd is not running: idle until the node is torn down
                while True:
                    time.sleep(3600)
            cfg = tmp / f"sshd_config{node}"
            cfg.write_text(f"ListenAddress {addr}\nPort 22\nHostKey {configs[node]}\n"
                           f"AuthorizedKeysFile {tmp / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
                           "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                           "PidFile none\nPrintMotd no\nMaxStartups 100\nMaxSessions 100\n"
                           + ("LogLevel QUIET\n" if self.quiet else ""))
            os.execv(SSHD, [SSHD, "-D", "-e", "-f", str(cfg)])
            return 1

        return init

    @staticmethod
    def _wait_port(addr: str) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection((addr, 22), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd on {addr} did not come up")

    def ssh_args(self, known_hosts: Path | None = None) -> list[str]:
        return ["--ssh-user", "root", "--ssh-key", str(self.client_key), "--known-hosts",
                str(known_hosts or self.known_hosts), "--ssh-config", str(self.ssh_config),
                "--connect-timeout", "3"]

    def pids(self, node: int) -> list[int]:
        """Every process of host ``node`` (as pids of this machine's PID namespace)."""
        out = subprocess.run(["ip", "netns", "pids", self.cluster.ns(node)], capture_output=True, text=True,
                             check=False).stdout
        return [int(p) for p in out.split()]

    def shm_dir(self, node: int) -> Path:
        """Host ``node``'s own /dev/shm, seen from here through its init's root."""
        for pid in self.pids(node):  # the node's keeper lives as long as the node, in the node's mounts
            try:
                if Path(f"/proc/{pid}/comm").read_text().startswith("mnp-keep"):
                    return Path(f"/proc/{pid}/root/dev/shm")
            except OSError:
                continue
        raise RuntimeError(f"host {node} has no keeper process")

    def stop(self) -> None:
        self.cluster.teardown()
