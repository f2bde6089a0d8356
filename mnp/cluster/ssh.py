"""SSH clusters: nodes from a hostfile, ``--hosts`` or a Slurm allocation, agents started over SSH (paramiko).

Bring-up dials every host in parallel (at most ``fanout`` at once) with a connect timeout, never prompts, honours
``~/.ssh/config`` (HostName, User, Port, IdentityFile), and verifies host keys against known_hosts unless the user
passes the option whose name says it is insecure. Each host is then checked in one round trip (the remote Python,
its version, mnp and MPI), and every failure is named per host: unreachable, refused, authentication failed,
unknown or changed host key, mnp or MPI missing, Python version mismatch.

The agent is ``<remote python> -m mnp.node.agent``; its job handoff (CURVE keys) goes down the SSH channel's stdin, and
the channel stays open: when the SSH session ends, the agent's stdin closes and it stops its ranks.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnp.cluster.base import Cluster, NodeInfo
from mnp.cluster.hosts import HostSpec
from mnp.errors import ClusterError, HostError

__all__ = ["SshCluster", "SshOptions"]

_PREFLIGHT = (
    "import json, socket, sys\n"
    "r = {'python': '%d.%d' % sys.version_info[:2], 'hostname': socket.gethostname(), 'mnp': None, 'mpi': None}\n"
    "try:\n import mnp; r['mnp'] = mnp.__version__\nexcept Exception as e: r['mnp_error'] = str(e)\n"
    "try:\n from mpi4py import MPI; r['mpi'] = MPI.Get_library_version().splitlines()[0].strip()\n"
    "except Exception as e: r['mpi_error'] = str(e)\n"
    "print('MNP-PREFLIGHT ' + json.dumps(r))\n"
)


def _quiet_paramiko() -> None:
    """paramiko's transport threads log failures with tracebacks; with no logging set up, Python's last-resort
    handler prints them on stderr, beside our one-line error. A NullHandler on its logger keeps them out of sight
    (a user who configures logging, e.g. for --debug, still gets them)."""
    import logging

    log = logging.getLogger("paramiko")
    if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
        log.addHandler(logging.NullHandler())


def _no_ssh_answer(e: Exception) -> bool:
    """Whether paramiko failed because the peer never spoke SSH: its banner did not come in time (the transport
    thread gave up), or the negotiation was still waiting when ``connect`` moved on and found no session."""
    text = str(e)
    return "protocol banner" in text or "No existing session" in text or "Negotiation failed" in text


@dataclass(frozen=True)
class SshOptions:
    user: str | None = None
    port: int | None = None
    key_file: str | None = None
    connect_timeout: float = 10.0
    known_hosts: str | None = None  # default: ~/.ssh/known_hosts (and the system's)
    config_file: str | None = None  # default: ~/.ssh/config
    insecure_no_host_key_check: bool = False
    remote_python: str | None = None  # default: this interpreter's path
    fanout: int = 32


@dataclass
class _Host:
    spec: HostSpec
    client: Any = None
    channel: Any = None
    info: dict[str, Any] | None = None
    address: str = ""
    stderr_thread: threading.Thread | None = None


class SshCluster(Cluster):
    def __init__(self, job_id: str, hosts: list[HostSpec], opts: SshOptions) -> None:
        super().__init__(job_id, len(hosts))
        self.opts = opts
        self.hosts = [_Host(h) for h in hosts]
        self.python = opts.remote_python or sys.executable

    # -- bring-up ----------------------------------------------------------------------------------------------
    def create(self, shm_bytes: int | None, progress: Callable[[int, int], None] | None = None) -> list[NodeInfo]:
        done = 0
        lock = threading.Lock()
        errors: list[HostError] = []

        def one(h: _Host) -> None:
            nonlocal done
            try:
                self._connect(h)
                self._preflight(h)
            except HostError as e:
                with lock:
                    errors.append(e)
                return
            with lock:  # the progress line counts hosts that are ready, never ones that failed
                done += 1
                if progress:
                    progress(done, len(self.hosts))

        with ThreadPoolExecutor(max_workers=max(1, min(self.opts.fanout, len(self.hosts)))) as pool:
            list(pool.map(one, self.hosts))
        if errors:
            order = {h.spec.name: i for i, h in enumerate(self.hosts)}
            errors.sort(key=lambda e: order.get(e.host, 0))
            more = f" (and {len(errors) - 1} more host(s): {', '.join(e.host for e in errors[1:4])})" \
                if len(errors) > 1 else ""
            raise HostError(errors[0].host, errors[0].problem + more)
        first = self.hosts[0].client.get_transport()
        self.control_address = first.sock.getsockname()[0]  # the address the hosts reach us at
        self.nodes = [NodeInfo(i, h.info["hostname"] if h.info else h.spec.name, h.address)
                      for i, h in enumerate(self.hosts)]
        return self.nodes

    def _ssh_config(self, name: str) -> dict[str, Any]:
        import paramiko

        path = Path(self.opts.config_file or Path.home() / ".ssh" / "config")
        if not path.exists():
            return {}
        return dict(paramiko.SSHConfig.from_path(str(path)).lookup(name))

    def _connect(self, h: _Host) -> None:
        import paramiko

        _quiet_paramiko()
        cfg = self._ssh_config(h.spec.name)
        hostname = cfg.get("hostname", h.spec.name)
        user = h.spec.user or self.opts.user or cfg.get("user") or os.environ.get("USER") or "root"
        port = h.spec.port or self.opts.port or int(cfg.get("port", 22))
        keys: list[str] | None = [self.opts.key_file] if self.opts.key_file else \
            [str(k) for k in cfg.get("identityfile", [])] or None
        client = paramiko.SSHClient()
        if self.opts.insecure_no_host_key_check:
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        else:
            client.load_system_host_keys()
            known = Path(self.opts.known_hosts) if self.opts.known_hosts else Path.home() / ".ssh" / "known_hosts"
            if known.exists():
                client.load_host_keys(str(known))
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        t = self.opts.connect_timeout
        name = h.spec.name
        try:
            connect: dict[str, Any] = {"port": port, "username": user, "key_filename": keys, "timeout": t,
                                       "banner_timeout": t, "auth_timeout": t, "channel_timeout": t,
                                       "allow_agent": keys is None, "look_for_keys": keys is None}
            client.connect(hostname, **connect)  # key_filename: a str or a list of them
        except paramiko.BadHostKeyException:
            client.close()
            raise HostError(name, "host key CHANGED since it was recorded in known_hosts (a reinstalled host, or "
                            "someone in between): check it, then update known_hosts") from None
        except paramiko.AuthenticationException:
            client.close()
            raise HostError(name, f"authentication failed for user {user!r} (no accepted key"
                            f"{': ' + keys[0] if keys else ''})") from None
        except paramiko.SSHException as e:
            client.close()
            if "not found in known_hosts" in str(e):
                raise HostError(name, "unknown host key: not in known_hosts (add it with ssh-keyscan after checking "
                                "it, or pass --insecure-no-host-key-check)") from None
            if _no_ssh_answer(e):
                raise HostError(name, f"port {port} accepted the connection but no SSH server answered within "
                                f"{t:g}s (sshd hung or overloaded, or another service on that port)") from None
            raise HostError(name, f"SSH failed: {e}") from None
        except paramiko.ssh_exception.NoValidConnectionsError as e:
            client.close()
            refused = any(getattr(x, "errno", None) == 111 for x in e.errors.values())
            raise HostError(name, f"connection refused on port {port} (is sshd running?)" if refused
                            else f"unreachable on port {port}: {e}") from None
        except socket.gaierror:
            client.close()
            raise HostError(name, "unknown host name (it does not resolve)") from None
        except TimeoutError:
            client.close()
            raise HostError(name, f"unreachable: no answer on port {port} within {t:g}s") from None
        except OSError as e:
            client.close()
            raise HostError(name, f"unreachable: {e.strerror or e}") from None
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(5)
        h.client = client
        h.address = transport.getpeername()[0]

    def _run(self, h: _Host, command: str) -> tuple[int, str, str]:
        t = self.opts.connect_timeout
        try:
            _, out, err = h.client.exec_command(command, timeout=max(t, 30))
            o, e = out.read().decode(errors="replace"), err.read().decode(errors="replace")
            return out.channel.recv_exit_status(), o, e
        except (OSError, EOFError) as e:
            raise HostError(h.spec.name, f"lost the SSH connection: {e}") from None

    def _preflight(self, h: _Host) -> None:
        import shlex

        rc, out, err = self._run(h, f"{shlex.quote(self.python)} -c {shlex.quote(_PREFLIGHT)}")
        name = h.spec.name
        if rc == 127 or "not found" in err and "MNP-PREFLIGHT" not in out:
            raise HostError(name, f"Python not found at {self.python} (set --remote-python)")
        line = next((ln for ln in out.splitlines() if ln.startswith("MNP-PREFLIGHT ")), None)
        if line is None:
            raise HostError(name, f"{self.python} failed to run (exit {rc}): {err.strip().splitlines()[-1:]}")
        info = json.loads(line.split(" ", 1)[1])
        here = f"{sys.version_info[0]}.{sys.version_info[1]}"
        if info["python"] != here:
            raise HostError(name, f"Python version mismatch: {info['python']} at {self.python} there, {here} here "
                            "(use the same version, or --remote-python)")
        if not info["mnp"]:
            raise HostError(name, f"mnp is not installed for {self.python} there ({info.get('mnp_error', '')})")
        if not info["mpi"]:
            raise HostError(name, f"MPI not usable for {self.python} there: {info.get('mpi_error', '')}")
        h.info = info

    # -- agents ------------------------------------------------------------------------------------------------
    def start_agents(self, handoffs: dict[int, dict[str, Any]]) -> None:
        import shlex

        for i, h in enumerate(self.hosts):
            transport = h.client.get_transport()
            chan = transport.open_session(timeout=self.opts.connect_timeout)
            chan.exec_command(f"exec {shlex.quote(self.python)} -m mnp.node.agent")
            chan.sendall(json.dumps({**handoffs[i], "watch_stdin": True}).encode() + b"\n")
            h.channel = chan
            h.stderr_thread = threading.Thread(target=self._relay_stderr, args=(i, chan), daemon=True)
            h.stderr_thread.start()

    @staticmethod
    def _relay_stderr(node: int, chan: Any) -> None:
        buf = b""
        while True:
            data = chan.recv_stderr(4096)
            if not data:
                break
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                sys.stderr.write(f"[node {node} agent] {line.decode(errors='replace')}\n")

    def lost(self) -> dict[int, int]:
        return {i: h.channel.recv_exit_status() for i, h in enumerate(self.hosts)
                if h.channel is not None and h.channel.exit_status_ready()}

    def teardown(self) -> None:
        for h in self.hosts:
            if h.channel is not None and not h.channel.exit_status_ready():
                try:
                    h.channel.shutdown_write()  # the agent sees end of stdin: it stops its ranks and exits
                except OSError:
                    pass
        deadline = time.monotonic() + 10
        for h in self.hosts:
            while h.channel is not None and not h.channel.exit_status_ready() and time.monotonic() < deadline:
                time.sleep(0.02)
            if h.client is not None:
                h.client.close()
        if any(h.channel is not None and not h.channel.exit_status_ready() for h in self.hosts):
            raise ClusterError("some agents did not exit within 10 s after their SSH session was closed")
