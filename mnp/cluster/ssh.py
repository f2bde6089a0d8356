"""SSH clusters: nodes from a hostfile, ``--hosts`` or a Slurm allocation, agents started over SSH (paramiko).

Bring-up dials every host in parallel (at most ``fanout`` at once) with a connect timeout, never prompts, and
reaches each host as its ssh_config says, read by OpenSSH itself (:mod:`mnp.cluster.sshconfig`; dialling, host keys
and proxies in :mod:`mnp.cluster.sshdial`); host keys are verified unless the user passes the option whose name
says it is insecure. Each host then runs one command on one channel,
``<remote python> -c`` :data:`~mnp.cluster.ssh_task.BOOTSTRAP`: it answers the preflight (the remote Python, its
version, mnp and MPI) and stays as the host's agent, waiting for its job handoff (:mod:`mnp.cluster.ssh_task`).
Every failure is named per host: unreachable, refused, authentication failed, unknown or changed host key, mnp or
MPI missing, Python version mismatch.

The handoff (CURVE keys) goes down that channel's stdin, and the channel stays open: when the SSH session ends, the
agent's stdin closes and it stops its ranks.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from mnp.cluster.base import Cluster, NodeInfo
from mnp.cluster.hosts import HostSpec
from mnp.cluster.ssh_task import BOOTSTRAP, TAG, preflight_problem
from mnp.cluster.sshdial import Dialer, DialOptions
from mnp.cluster.sshopts import SshOptions
from mnp.control.tree import DEFAULT_WIDTH
from mnp.errors import ClusterError, HostError

__all__ = ["SshCluster", "SshOptions"]

@dataclass
class _Host:
    spec: HostSpec
    client: Any = None
    channel: Any = None
    info: dict[str, Any] | None = None
    address: str = ""
    direct: bool = True  # False behind a ProxyJump or ProxyCommand: the address comes from the agent's hello
    timeout: float = 10.0  # its connect timeout (--connect-timeout, else ssh_config's ConnectTimeout, else 10 s)
    stderr_thread: threading.Thread | None = None


class SshCluster(Cluster):
    def __init__(self, job_id: str, hosts: list[HostSpec], opts: SshOptions) -> None:
        super().__init__(job_id, len(hosts))
        self.opts = opts
        self.hosts = [_Host(h) for h in hosts]
        # tree spawn: this process dials the first `tree_width` hosts; each of their agents dials its children
        # (mnp.node.spawner) with the system ssh and the same options, and so on down (mnp.control.tree)
        self.tree_width = opts.tree_width or DEFAULT_WIDTH
        self.dialled = self.hosts[: self.tree_width]
        self.python = opts.remote_python or sys.executable
        self.dialer = Dialer(DialOptions(opts.user, opts.port, opts.key_file, opts.connect_timeout, opts.known_hosts,
                                         opts.config_file, opts.insecure_no_host_key_check))
        self._work: tuple[ThreadPoolExecutor, list[Future[HostError | None]]] | None = None  # begun, not created

    # -- bring-up ----------------------------------------------------------------------------------------------
    def begin(self) -> None:
        """Dial and preflight every host in the background (at most ``fanout`` at once): each host's agent starts
        and waits for its handoff while the coordinator loads, records and plans the job."""
        if self._work is None:
            pool = ThreadPoolExecutor(max_workers=max(1, min(self.opts.fanout, len(self.hosts))))
            self._work = (pool, [pool.submit(self._reach, h) for h in self.dialled])

    def _reach(self, h: _Host) -> HostError | None:
        try:
            self._connect(h)
            self._preflight(h)
        except HostError as e:
            return e
        return None

    def _finish_work(self) -> None:
        if self._work is not None:
            self._work[0].shutdown(wait=True, cancel_futures=True)  # dials in flight end within their timeouts
            self._work = None

    def create(self, shm_bytes: int | None, progress: Callable[[int, int], None] | None = None) -> list[NodeInfo]:
        self.begin()
        assert self._work is not None
        done = 0
        errors: list[HostError] = []
        try:
            for f in as_completed(self._work[1]):
                e = f.result()
                if e is not None:
                    errors.append(e)
                    continue
                done += 1  # the progress line counts hosts that are ready, never ones that failed
                if progress:
                    progress(done, len(self.dialled))
        finally:
            self._finish_work()
        if errors:
            order = {h.spec.name: i for i, h in enumerate(self.hosts)}
            errors.sort(key=lambda e: order.get(e.host, 0))
            more = f" (and {len(errors) - 1} more host(s): {', '.join(e.host for e in errors[1:4])})" \
                if len(errors) > 1 else ""
            raise HostError(errors[0].host, errors[0].problem + more)
        self.control_address = os.environ.get("MNP_BIND_ADDRESS") or self._local_address()
        for h in self.hosts[len(self.dialled):]:  # reached by a relay: the address comes from the agent's hello
            h.direct = False
        self.nodes = [NodeInfo(i, h.info["hostname"] if h.info else h.spec.name, h.address)
                      for i, h in enumerate(self.hosts)]
        return self.nodes

    def spawn_spec(self, node: int) -> dict[str, Any]:
        """How a relay reaches host ``node``: the system ssh with this job's options (config file, identity,
        known_hosts, strictness, connect timeout; never a prompt), running the same bootstrap as here. The files
        named must exist on the relay's host too (a shared home directory, as for PRRTE's and Hydra's tree spawn)."""
        import shlex

        h, o = self.hosts[node].spec, self.opts
        argv = ["ssh", "-T", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(max(1, o.connect_timeout or 10))}"]
        if o.config_file:
            argv += ["-F", o.config_file]
        if o.key_file:
            argv += ["-i", o.key_file, "-o", "IdentitiesOnly=yes"]
        if o.known_hosts:
            argv += ["-o", f"UserKnownHostsFile={o.known_hosts}"]
        if o.insecure_no_host_key_check:
            argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        if h.user or o.user:
            argv += ["-l", str(h.user or o.user)]
        if h.port or o.port:
            argv += ["-p", str(h.port or o.port)]
        argv += ["--", h.name, f"exec {shlex.quote(self.python)} -c {shlex.quote(BOOTSTRAP)}"]
        return {"name": h.name, "argv": argv, "python": self.python}

    def _local_address(self) -> str:
        """The address the hosts reach us at: ours on the first direct connection, else on the way to the first
        host (agents dial the coordinator directly, also behind a ProxyJump: MNP_BIND_ADDRESS chooses it)."""
        for h in self.dialled:
            sock = h.client.get_transport().sock
            if isinstance(sock, socket.socket):
                return str(sock.getsockname()[0])
        from mnp.fabric.facts import address_toward

        for h in self.dialled:
            if (mine := address_toward(h.address or h.spec.name)) is not None:
                return mine
        raise ClusterError("no address of this host the nodes can reach is known (all are behind a proxy): set "
                           "MNP_BIND_ADDRESS")

    def _connect(self, h: _Host) -> None:
        client, cfg = self.dialer.dial(h.spec.name, h.spec.user, h.spec.port)
        h.client = client
        h.timeout = self.dialer.timeout(cfg)
        sock = client.get_transport().sock
        h.direct = isinstance(sock, socket.socket)
        h.address = str(sock.getpeername()[0]) if h.direct else self._address_of(cfg.hostname)

    @staticmethod
    def _address_of(name: str) -> str:
        try:
            return str(socket.getaddrinfo(name, None, socket.AF_INET)[0][4][0])
        except (OSError, UnicodeError, IndexError):
            return ""  # resolves only behind the proxy: the agent's hello says

    def joined(self, hellos: dict[int, dict[str, Any]]) -> list[NodeInfo]:
        """Hosts behind a proxy get the address their agent saw itself at."""
        self.nodes = [n if self.hosts[n.index].direct else
                      NodeInfo(n.index, n.hostname, hellos.get(n.index, {}).get("address") or n.address)
                      for n in self.nodes]
        return self.nodes

    def _preflight(self, h: _Host) -> None:
        """Start the host's agent (one channel, one exec) and read its preflight line; the channel stays open."""
        import shlex

        from paramiko import SSHException

        name = h.spec.name
        wait = max(h.timeout, 30)
        try:
            chan = h.client.get_transport().open_session(timeout=wait)
            chan.settimeout(wait)
            chan.exec_command(f"exec {shlex.quote(self.python)} -c {shlex.quote(BOOTSTRAP)}")
            h.channel = chan
            out = b""
            while (line := next((ln for ln in out.split(b"\n")[:-1] if ln.startswith(TAG.encode())), None)) is None:
                more = chan.recv(65536)
                if not more:
                    break
                out += more
        except TimeoutError:
            raise HostError(name, f"{self.python} gave no preflight answer within {wait:g}s") from None
        except (OSError, EOFError, SSHException) as e:
            raise HostError(name, f"lost the SSH connection: {e}") from None
        if line is None:
            rc = chan.recv_exit_status()
            err = self._stderr_of(chan)
            if rc == 127 or "not found" in err:
                raise HostError(name, f"Python not found at {self.python} (set --remote-python)")
            raise HostError(name, f"{self.python} failed to run (exit {rc}): {err.strip().splitlines()[-1:]}")
        info = json.loads(line.decode().split(" ", 1)[1])
        if problem := preflight_problem(info, self.python):
            raise HostError(name, problem)
        h.info = info

    @staticmethod
    def _stderr_of(chan: Any) -> str:
        err = b""
        try:
            while more := chan.recv_stderr(65536):
                err += more
        except (OSError, EOFError):
            pass
        return err.decode(errors="replace")

    # -- agents ------------------------------------------------------------------------------------------------
    def start_agents(self, handoffs: dict[int, dict[str, Any]]) -> None:
        """The agents run since the preflight, waiting on their channel's stdin: hand each its job."""
        for i, handoff in handoffs.items():  # the hosts dialled here (the others' handoffs go through relays)
            h = self.hosts[i]
            chan = h.channel
            chan.settimeout(None)
            try:
                chan.sendall(json.dumps({**handoff, "watch_stdin": True}).encode() + b"\n")
            except (OSError, EOFError) as e:
                raise HostError(h.spec.name, f"lost the SSH connection: {e}") from None
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
        self._finish_work()  # begun and never created (the job failed first): what was reached is closed below
        for h in self.hosts:
            if h.channel is not None and not h.channel.exit_status_ready():
                try:
                    h.channel.shutdown_write()  # the agent sees end of stdin: it stops its ranks and exits
                except OSError:
                    pass
        deadline = time.monotonic() + 10
        for h in self.hosts:
            if h.channel is not None:  # set when the exit status comes (or the channel closes)
                h.channel.status_event.wait(max(0.0, deadline - time.monotonic()))
            if h.client is not None:
                h.client.close()
        self.dialer.close()
        if any(h.channel is not None and not h.channel.exit_status_ready() for h in self.hosts):
            raise ClusterError("some agents did not exit within 10 s after their SSH session was closed")
