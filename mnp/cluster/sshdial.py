"""Dialling one SSH host the way its ssh_config says (:mod:`mnp.cluster.sshconfig`): keys, known_hosts files and
how strict to be about them, ProxyJump chains and ProxyCommand, the connect timeout. Every failure is one
:class:`~mnp.errors.HostError` naming the host (and the jump host, where it was one).

Host keys: the user's known_hosts files (UserKnownHostsFile, or ``--known-hosts``) and the global ones are loaded;
``StrictHostKeyChecking yes`` (and ``ask``: mnp never prompts) refuses an unknown key, ``accept-new`` and ``no``
accept it and append it to the first user known_hosts file, as ssh does. A key that *changed* is refused whatever
the setting (ssh with ``no`` would still connect; mnp does not). ``--insecure-no-host-key-check`` accepts anything
and records nothing.

ProxyJump: the hops are dialled in order, each with its own ssh_config (its user, port, keys, known_hosts), the
next one through a ``direct-tcpip`` channel of the previous; one connection per chain serves every host behind it.
ProxyCommand: the command's stdin/stdout are the connection (``ssh -W %h:%p bastion``, ``nc``...).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnp.cluster.sshconfig import HostConfig, Jump, host_config
from mnp.errors import HostError

__all__ = ["DialOptions", "Dialer"]

DEFAULT_TIMEOUT = 10.0


_IMPORT_LOCK = threading.Lock()


def _import_paramiko() -> Any:
    """paramiko, imported without ``invoke`` where mnp never needs it (a third of paramiko's import time, ~45 ms
    of every SSH launch). paramiko's config parser uses invoke for ``Match exec`` only, and mnp parses ssh_config
    with paramiko only where there is no ``ssh`` client (:mod:`mnp.cluster.sshconfig`); then, or when invoke is
    already loaded, paramiko is imported as it comes. Other code can import invoke afterwards as usual."""
    with _IMPORT_LOCK:
        if "paramiko" in sys.modules:
            return sys.modules["paramiko"]
        skip = "invoke" not in sys.modules and shutil.which("ssh") is not None
        if skip:
            sys.modules["invoke"] = None  # type: ignore[assignment]  # import invoke -> ImportError, as if absent
        try:
            import paramiko
        finally:
            if skip and "invoke" in sys.modules and sys.modules["invoke"] is None:
                del sys.modules["invoke"]
        return paramiko


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
class DialOptions:
    user: str | None = None
    port: int | None = None
    key_file: str | None = None
    connect_timeout: float | None = None  # None: ssh_config's ConnectTimeout, else DEFAULT_TIMEOUT
    known_hosts: str | None = None  # None: ssh_config's UserKnownHostsFile (~/.ssh/known_hosts by default)
    config_file: str | None = None  # None: ~/.ssh/config and the system's
    insecure_no_host_key_check: bool = False


class _Record:
    """paramiko's missing-host-key policy for accept-new and no: accept, and append to the user's known_hosts."""

    def __init__(self, path: Path, lock: threading.Lock) -> None:
        self.path, self.lock = path, lock

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        with self.lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class Dialer:
    """Dials hosts (many threads at once) and keeps the jump connections they share until :meth:`close`."""

    def __init__(self, opts: DialOptions) -> None:
        _import_paramiko()  # here, once, before any dialling thread
        _quiet_paramiko()
        self.opts = opts
        self._lock = threading.Lock()
        self._record_lock = threading.Lock()
        self._jumps: dict[tuple[Jump, ...], Any] = {}
        self._jump_locks: dict[tuple[Jump, ...], threading.Lock] = {}

    def config(self, name: str, user: str | None = None, port: int | None = None) -> HostConfig:
        o = self.opts
        return host_config(name, o.config_file, user or o.user, port or o.port, o.known_hosts, o.connect_timeout)

    def timeout(self, cfg: HostConfig) -> float:
        if self.opts.connect_timeout is not None:
            return self.opts.connect_timeout
        return cfg.connect_timeout if cfg.connect_timeout is not None else DEFAULT_TIMEOUT

    def dial(self, name: str, user: str | None = None, port: int | None = None) -> tuple[Any, HostConfig]:
        """A connected paramiko client for host ``name``, and the configuration it was dialled with."""
        cfg = self.config(name, user, port)
        sock: Any = None
        t = self.timeout(cfg)
        if cfg.proxy_command:
            paramiko = _import_paramiko()
            sock = paramiko.ProxyCommand(cfg.proxy_command)
        elif cfg.proxy_jump:
            transport = self._jump(cfg.proxy_jump, name)
            try:
                sock = transport.open_channel("direct-tcpip", (cfg.hostname, cfg.port), ("127.0.0.1", 0), timeout=t)
            except Exception as e:  # noqa: BLE001 - paramiko's ChannelException, SSHException, EOFError...
                raise HostError(name, f"ProxyJump {cfg.proxy_jump[-1].host} cannot reach {cfg.hostname} port "
                                f"{cfg.port}: {e}") from None
        return self._client(cfg, sock, name), cfg

    def _jump(self, hops: tuple[Jump, ...], name: str) -> Any:
        """The transport of the last hop of ``hops`` (dialled once, shared by every host behind it)."""
        with self._lock:
            lock = self._jump_locks.setdefault(hops, threading.Lock())
        with lock:
            if hops in self._jumps:
                return self._jumps[hops].get_transport()
            sock: Any = None
            for i, hop in enumerate(hops):
                cfg = self.config(hop.host, hop.user, hop.port)
                if i:
                    try:
                        sock = self._jumps[hops[:i]].get_transport().open_channel(
                            "direct-tcpip", (cfg.hostname, cfg.port), ("127.0.0.1", 0), timeout=self.timeout(cfg))
                    except Exception as e:  # noqa: BLE001
                        raise HostError(name, f"ProxyJump {hops[i - 1].host} cannot reach {hop.host}: {e}") from None
                if hops[: i + 1] not in self._jumps:
                    try:
                        self._jumps[hops[: i + 1]] = self._client(cfg, sock, hop.host)
                    except HostError as e:
                        raise HostError(name, f"ProxyJump {hop.host}: {e.problem}") from None
            return self._jumps[hops].get_transport()

    def _host_keys(self, client: Any, cfg: HostConfig) -> None:
        paramiko = _import_paramiko()
        if self.opts.insecure_no_host_key_check:
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            return
        for path in (Path(p).expanduser() for p in cfg.global_known_hosts):
            if path.is_file():
                client.load_system_host_keys(str(path))
        users = [Path(p).expanduser() for p in cfg.user_known_hosts if p != "/dev/null"]
        for path in users:
            if path.is_file():
                client.get_host_keys().load(str(path))
        if cfg.strict in ("accept-new", "no") and users:
            client.set_missing_host_key_policy(_Record(users[0], self._record_lock))
        else:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())

    def _client(self, cfg: HostConfig, sock: Any, name: str) -> Any:
        paramiko = _import_paramiko()
        client = paramiko.SSHClient()
        self._host_keys(client, cfg)
        keys: list[str] | None = [self.opts.key_file] if self.opts.key_file else \
            [str(Path(k).expanduser()) for k in cfg.identity_files if Path(k).expanduser().is_file()] or None
        t = self.timeout(cfg)
        port = cfg.port

        def fail(problem: str) -> HostError:
            return HostError(name, problem)

        try:
            client.connect(cfg.hostname, port=port, username=cfg.user, key_filename=keys, timeout=t, sock=sock,
                           banner_timeout=t, auth_timeout=t, channel_timeout=t, allow_agent=keys is None,
                           look_for_keys=keys is None)
        except paramiko.BadHostKeyException:
            client.close()
            raise fail("host key CHANGED since it was recorded in known_hosts (a reinstalled host, or someone in "
                       "between): check it, then update known_hosts") from None
        except paramiko.AuthenticationException:
            client.close()
            raise fail(f"authentication failed for user {cfg.user!r} (no accepted key"
                       f"{': ' + keys[0] if keys else ''})") from None
        except paramiko.SSHException as e:
            client.close()
            if "not found in known_hosts" in str(e):
                raise fail("unknown host key: not in known_hosts (add it with ssh-keyscan after checking it, or "
                           "pass --insecure-no-host-key-check)") from None
            if _no_ssh_answer(e):
                raise fail(f"port {port} accepted the connection but no SSH server answered within {t:g}s (sshd "
                           "hung or overloaded, or another service on that port)") from None
            raise fail(f"SSH failed: {e}") from None
        except paramiko.ssh_exception.NoValidConnectionsError as e:
            client.close()
            refused = any(getattr(x, "errno", None) == 111 for x in e.errors.values())
            raise fail(f"connection refused on port {port} (is sshd running?)" if refused
                       else f"unreachable on port {port}: {e}") from None
        except socket.gaierror:
            client.close()
            raise fail("unknown host name (it does not resolve)") from None
        except TimeoutError:
            client.close()
            raise fail(f"unreachable: no answer on port {port} within {t:g}s") from None
        except OSError as e:
            client.close()
            raise fail(f"unreachable: {e.strerror or e}") from None
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(5)
        return client

    def close(self) -> None:
        for client in self._jumps.values():
            client.close()
        self._jumps.clear()
