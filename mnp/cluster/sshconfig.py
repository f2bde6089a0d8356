"""What OpenSSH would use to reach a host, from ssh_config, as OpenSSH itself reads it.

:func:`host_config` asks the system's ``ssh -G`` (which connects nowhere: it prints the configuration it resolved
for a host), so ``Include``, ``Host`` and ``Match`` blocks, tokens, ``CanonicalizeHostname`` and the system-wide
file mean exactly what they mean to ``ssh``. mnp's options go in as ssh's own command-line flags (``-l``, ``-p``,
``-o UserKnownHostsFile=``, ``-o ConnectTimeout=``), so they win over the file as they would for ``ssh``.

Of the result mnp uses: HostName, User, Port, IdentityFile, UserKnownHostsFile, GlobalKnownHostsFile,
StrictHostKeyChecking (yes, accept-new, no; ``ask`` is yes: mnp never prompts), ProxyJump, ProxyCommand and
ConnectTimeout. Where there is no ``ssh`` client, paramiko's parser reads the file instead (no ``Include`` there).

A config that ssh refuses is a :class:`~mnp.errors.UsageError` (exit 2) naming the host and quoting ssh's line.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mnp.errors import UsageError

__all__ = ["HostConfig", "Jump", "host_config", "parse_jumps"]

_DEFAULT_IDS = {f"~/.ssh/{n}" for n in ("id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk",
                                        "id_xmss", "id_dsa")}
_STRICT = {"true": "yes", "yes": "yes", "ask": "yes", "accept-new": "accept-new", "false": "no", "no": "no",
           "off": "no"}


@dataclass(frozen=True)
class Jump:
    """One ProxyJump hop: ``[user@]host[:port]``."""

    host: str
    user: str | None = None
    port: int | None = None


@dataclass(frozen=True)
class HostConfig:
    name: str  # as mnp was given it
    hostname: str
    user: str
    port: int
    identity_files: tuple[str, ...] = ()  # explicit ones only (empty: ssh's defaults, which paramiko also tries)
    user_known_hosts: tuple[str, ...] = ("~/.ssh/known_hosts",)
    global_known_hosts: tuple[str, ...] = ()
    strict: str = "yes"  # yes | accept-new | no
    proxy_jump: tuple[Jump, ...] = ()
    proxy_command: str | None = None  # tokens (%h %p %r %n %%) already expanded
    connect_timeout: float | None = None


def parse_jumps(text: str, host: str) -> tuple[Jump, ...]:
    """``ProxyJump``'s ``[user@]host[:port][,...]`` (``none``: no jump)."""
    if text.strip().lower() == "none":
        return ()
    hops = []
    for item in text.split(","):
        item = item.strip().removeprefix("ssh://")
        user, at, rest = item.rpartition("@")
        name, colon, port = rest.partition(":")
        if not name or (colon and not port.isdigit()) or (at and not user):
            raise UsageError(f"{host}: ssh_config ProxyJump: {item!r} is not [user@]host[:port]")
        hops.append(Jump(name, user or None, int(port) if colon else None))
    return tuple(hops)


def _expand(command: str, hostname: str, port: int, user: str, name: str) -> str:
    out, i = [], 0
    while i < len(command):
        c = command[i]
        if c == "%" and i + 1 < len(command):
            out.append({"h": hostname, "p": str(port), "r": user, "n": name, "%": "%"}.get(command[i + 1],
                                                                                            command[i:i + 2]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def host_config(name: str, config_file: str | None = None, user: str | None = None, port: int | None = None,
                known_hosts: str | None = None, connect_timeout: float | None = None) -> HostConfig:
    """How to reach ``name``: ssh_config (``config_file``, else ``~/.ssh/config`` and the system's) with mnp's
    options (user, port, known_hosts, connect timeout) over it, as ssh would combine them."""
    return _host_config(name, config_file, user, port, known_hosts, connect_timeout)


@functools.lru_cache(maxsize=4096)
def _host_config(name: str, config_file: str | None, user: str | None, port: int | None, known_hosts: str | None,
                 connect_timeout: float | None) -> HostConfig:
    if config_file is not None and not Path(config_file).is_file():
        raise UsageError(f"--ssh-config: {config_file}: no such file")
    if shutil.which("ssh") is None:
        return _paramiko_config(name, config_file, user, port, known_hosts, connect_timeout)
    argv = ["ssh", "-G", "-T"]
    if config_file is not None:
        argv += ["-F", config_file]
    if user:
        argv += ["-l", user]
    if port:
        argv += ["-p", str(port)]
    if known_hosts:
        argv += ["-o", f"UserKnownHostsFile={known_hosts}"]
    if connect_timeout is not None:
        argv += ["-o", f"ConnectTimeout={max(1, round(connect_timeout))}"]
    p = subprocess.run([*argv, "--", name], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30,
                       check=False, start_new_session=True)
    if p.returncode != 0:
        why = next((ln.strip() for ln in p.stderr.splitlines() if ln.strip()), f"ssh -G exited {p.returncode}")
        raise UsageError(f"{name}: ssh_config: {why}")
    values: dict[str, list[str]] = {}
    for line in p.stdout.splitlines():
        key, _, value = line.partition(" ")
        values.setdefault(key.lower(), []).append(value.strip())

    def one(key: str, default: str = "") -> str:
        return values.get(key, [default])[0]

    ids = tuple(values.get("identityfile", []))
    timeout = one("connecttimeout", "none")
    cfg_user, cfg_port, hostname = one("user") or os.environ.get("USER", "root"), int(one("port", "22")), \
        one("hostname", name)
    command = one("proxycommand", "none")
    return HostConfig(
        name=name, hostname=hostname, user=cfg_user, port=cfg_port,
        identity_files=() if set(ids) <= _DEFAULT_IDS else ids,
        user_known_hosts=tuple(one("userknownhostsfile", "~/.ssh/known_hosts").split()),
        global_known_hosts=tuple(one("globalknownhostsfile").split()),
        strict=_STRICT.get(one("stricthostkeychecking", "ask").lower(), "yes"),
        proxy_jump=parse_jumps(one("proxyjump", "none"), name),
        proxy_command=None if command.lower() == "none" else _expand(command, hostname, cfg_port, cfg_user, name),
        connect_timeout=None if timeout == "none" else float(timeout))


def _paramiko_config(name: str, config_file: str | None, user: str | None, port: int | None,
                     known_hosts: str | None, connect_timeout: float | None) -> HostConfig:
    """Without an ssh client: paramiko's reading of the one file (no Include, no system-wide file)."""
    import paramiko

    path = Path(config_file or Path.home() / ".ssh" / "config")
    try:
        cfg = paramiko.SSHConfig.from_path(str(path)).lookup(name) if path.exists() else {"hostname": name}
    except Exception as e:  # noqa: BLE001 - paramiko raises several kinds for a bad file
        raise UsageError(f"{name}: ssh_config {path}: {e}") from None
    hostname = cfg.get("hostname", name)
    the_user = user or cfg.get("user") or os.environ.get("USER", "root")
    the_port = port or int(cfg.get("port", 22))
    command = cfg.get("proxycommand")
    timeout = connect_timeout if connect_timeout is not None else cfg.get("connecttimeout")
    return HostConfig(
        name=name, hostname=hostname, user=the_user, port=the_port,
        identity_files=tuple(cfg.get("identityfile", [])),
        user_known_hosts=(known_hosts,) if known_hosts else tuple(
            cfg.get("userknownhostsfile", "~/.ssh/known_hosts").split()),
        global_known_hosts=tuple(cfg.get("globalknownhostsfile", "/etc/ssh/ssh_known_hosts").split()),
        strict=_STRICT.get(str(cfg.get("stricthostkeychecking", "ask")).lower(), "yes"),
        proxy_jump=parse_jumps(cfg.get("proxyjump", "none"), name),
        proxy_command=None if not command or command.lower() == "none" else _expand(command, hostname, the_port,
                                                                                  the_user, name),
        connect_timeout=float(timeout) if timeout is not None else None)
