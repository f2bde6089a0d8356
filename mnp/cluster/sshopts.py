"""How to reach SSH hosts (:class:`SshOptions`): a module of its own, so that jobs that do not dial (a pool's,
Slurm's) read their options without loading the SSH provider."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SshOptions"]


@dataclass(frozen=True)
class SshOptions:
    user: str | None = None
    port: int | None = None
    key_file: str | None = None
    connect_timeout: float | None = None  # None: ssh_config's ConnectTimeout, else 10 s
    known_hosts: str | None = None  # default: ssh_config's UserKnownHostsFile (~/.ssh/known_hosts), and the global ones
    config_file: str | None = None  # default: ~/.ssh/config and the system's
    insecure_no_host_key_check: bool = False
    remote_python: str | None = None  # default: this interpreter's path
    fanout: int = 32
    via: str = "ssh"  # how agents start on the hosts: "ssh", or "srun" inside a Slurm allocation
    tree_width: int | None = None  # hosts this process dials at most; the others are dialled by relays (None: 32)
