"""Host lists: hostfiles, the ``--hosts`` option and Slurm allocations, all turned into :class:`HostSpec` lists.

Hostfile syntax, one host a line; the three styles below may be mixed in one file::

    # comment: from '#' to the end of the line; blank lines are ignored
    node01                          # plain: a host, slots left to mnp (the host's CPU count)
    node02:4                        # MPICH: 4 slots
    node03 slots=4 max_slots=8      # Open MPI: slots, and optionally max_slots (or max-slots)
    alice@node04:2                  # any style may start with user@ (the SSH login)
    node05 slots=2 port=2222        # port=N (mnp's own key): the SSH port
    [fe80::1]:2                     # an IPv6 address goes in brackets

``host:N`` always means N slots, never a port: a port is given only as ``port=N``. Every host appears once: a
repeated host is an error naming both lines, because merging slot counts would hide a mistake. Hosts are
compared without regard to case (DNS names are case-insensitive) and the user; two entries that differ only in
``port=`` are two hosts (e.g. two SSH servers in containers on one machine).

``--hosts`` takes the same ``[user@]host[:N]`` items separated by commas: ``--hosts h1,h2:4,alice@h3:2``.

Inside a Slurm allocation :func:`slurm_hosts` reads the allocation's nodes and tasks per node from the
environment. All errors are :class:`~mnp.errors.UsageError` with a one-line message naming where the problem is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import hostlist

from mnp.errors import UsageError
from mnp.spec.textfile import read_text

__all__ = ["HostSpec", "choose_via", "load_hostfile", "parse_hostfile", "parse_hosts_option", "slurm_hosts"]

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252}[A-Za-z0-9_])?$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?$")
_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
_UINT = re.compile(r"^[0-9]{1,9}$")  # nine digits: no int() of a 5,000-digit string
_MAX_SLOTS = 1_000_000
_KEYS = {"slots": "slots", "max_slots": "max_slots", "max-slots": "max_slots", "port": "port"}


@dataclass(frozen=True)
class HostSpec:
    """One host to run on. ``None`` fields are left to mnp's defaults (slots: the host's CPU count; SSH user and
    port: the SSH client's configuration)."""

    name: str
    slots: int | None = None
    max_slots: int | None = None
    user: str | None = None
    port: int | None = None

    @property
    def target(self) -> str:
        """What an SSH client is given: ``user@name`` or ``name``."""
        return f"{self.user}@{self.name}" if self.user else self.name


class _Bad(ValueError):
    """A problem with one entry; the caller adds where it is (file and line, or the option and item)."""


def _number(what: str, text: str, high: int) -> int:
    if not _UINT.fullmatch(text) or not 1 <= int(text) <= high:
        raise _Bad(f"{what} must be a positive integer, got {text!r}" if what != "port"
                   else f"port must be an integer from 1 to 65535, got {text!r}")
    return int(text)


def _host(text: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:N]`` -> (user, host, slots or None)."""
    user: str | None = None
    if "@" in text:
        user, text = text.split("@", 1)
        if not _USER.fullmatch(user):
            raise _Bad(f"{user!r} is not a valid user name")
    slots: int | None = None
    if text.startswith("["):
        addr, sep, rest = text[1:].partition("]")
        if not sep or not addr or not _IPV6.fullmatch(addr):
            raise _Bad(f"{text!r} is not a bracketed IPv6 address such as [fe80::1]")
        if rest:
            if not rest.startswith(":"):
                raise _Bad(f"unexpected {rest!r} after {text[:len(addr) + 2]!r}")
            slots = _number("slots", rest[1:], _MAX_SLOTS)
        return user, addr, slots
    if text.count(":") > 1:
        raise _Bad(f"{text!r}: write an IPv6 address in brackets, e.g. [fe80::1]:4")
    name, colon, count = text.partition(":")
    if colon:
        slots = _number("slots", count, _MAX_SLOTS)
    if not name:
        raise _Bad("missing host name")
    if not _NAME.fullmatch(name):
        raise _Bad(f"{name!r} is not a valid host name")
    return user, name, slots


def _entry(text: str) -> HostSpec:
    """One hostfile line (comment already removed, not blank)."""
    first, *rest = text.split()
    user, name, slots = _host(first)
    values: dict[str, int] = {}
    for word in rest:
        key, eq, value = word.partition("=")
        if not eq:
            raise _Bad(f"unexpected {word!r} (use slots=N, max_slots=N or port=N)")
        field = _KEYS.get(key.lower())
        if field is None:
            raise _Bad(f"unknown key {key!r} (use slots=N, max_slots=N or port=N)")
        if field in values:
            raise _Bad(f"{key} is given twice")
        values[field] = _number(key, value, 65535 if field == "port" else _MAX_SLOTS)
    if "slots" in values and slots is not None:
        raise _Bad(f"slots given twice ({first!r} and slots={values['slots']})")
    slots = values.get("slots", slots)
    max_slots = values.get("max_slots")
    if max_slots is not None and slots is not None and max_slots < slots:
        raise _Bad(f"max_slots ({max_slots}) is less than slots ({slots})")
    return HostSpec(name, slots, max_slots, user, values.get("port"))


def _key(h: HostSpec) -> tuple[str, int | None]:
    return h.name.lower(), h.port


def _show(h: HostSpec) -> str:
    return h.name + (f" port={h.port}" if h.port is not None else "")


def parse_hostfile(text: str, source: str) -> list[HostSpec]:
    """Parse a hostfile (see the module docstring). ``source`` names the file in error messages."""
    out: list[HostSpec] = []
    seen: dict[tuple[str, int | None], int] = {}
    for lineno, raw in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            spec = _entry(line)
        except _Bad as e:
            raise UsageError(f"{source}:{lineno}: {e}") from None
        if _key(spec) in seen:
            raise UsageError(f"{source}:{lineno}: host {_show(spec)!r} is already listed on line "
                             f"{seen[_key(spec)]} (list each host once)")
        seen[_key(spec)] = lineno
        out.append(spec)
    if not out:
        raise UsageError(f"{source}: no hosts (the hostfile is empty or has only comments)")
    return out


def load_hostfile(path: str | Path) -> list[HostSpec]:
    """Read and parse a hostfile. Raises :class:`UsageError` (exit 2) on any problem."""
    p = Path(path)
    try:
        text = read_text(p)
    except ValueError as e:  # missing, not a regular file (a FIFO would block), over 1 MiB, not UTF-8
        raise UsageError(f"{p}: cannot read hostfile: {e}") from None
    return parse_hostfile(text, str(p))


def parse_hosts_option(text: str) -> list[HostSpec]:
    """Parse ``--hosts h1,h2:4,user@h3:2``: comma-separated ``[user@]host[:N]`` items, each host once."""
    if not text.strip():
        raise UsageError("--hosts: no hosts given (use e.g. --hosts h1,h2:4,user@h3:2)")
    out: list[HostSpec] = []
    seen: set[tuple[str, int | None]] = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise UsageError(f"--hosts: empty item in {text!r}")
        if any(c.isspace() for c in item):
            raise UsageError(f"--hosts: {item!r}: items are [user@]host[:N], with no spaces")
        try:
            user, name, slots = _host(item)
        except _Bad as e:
            raise UsageError(f"--hosts: {item!r}: {e}") from None
        spec = HostSpec(name, slots, None, user, None)
        if _key(spec) in seen:
            raise UsageError(f"--hosts: {item!r}: host {name!r} is listed twice")
        seen.add(_key(spec))
        out.append(spec)
    return out


_TASKS = re.compile(r"^([0-9]{1,9})(?:\(x([0-9]{1,9})\))?$")


def _tasks(var: str, value: str) -> list[int]:
    """Slurm's tasks-per-node syntax: ``2``, ``2(x3),1`` -> [2, 2, 2, 1]."""
    out: list[int] = []
    for part in value.split(","):
        m = _TASKS.fullmatch(part.strip())
        if not m:
            raise UsageError(f"{var}={value!r}: {part.strip()!r} is not N or N(xR)")
        count, repeat = int(m.group(1)), int(m.group(2) or 1)
        if count < 1 or repeat < 1:
            raise UsageError(f"{var}={value!r}: task counts and repeats must be positive")
        if len(out) + repeat > hostlist.MAX_SIZE:
            raise UsageError(f"{var}={value!r}: more than {hostlist.MAX_SIZE} nodes")
        out.extend([count] * repeat)
    return out


def slurm_hosts(environ: Mapping[str, str]) -> list[HostSpec] | None:
    """The hosts of the Slurm allocation this process runs in, or ``None`` outside one.

    Nodes come from ``SLURM_JOB_NODELIST`` (or ``SLURM_NODELIST``), e.g. ``node[01-04,07]``; slots from
    ``SLURM_NTASKS_PER_NODE`` (set by ``--ntasks-per-node``) or else ``SLURM_TASKS_PER_NODE``, in Slurm's
    ``2(x3),1`` syntax, where a single count applies to every node; without either, slots are left open. The node
    count is checked against ``SLURM_JOB_NUM_NODES`` (or ``SLURM_NNODES``) where set.
    """
    var = next((v for v in ("SLURM_JOB_NODELIST", "SLURM_NODELIST") if environ.get(v, "").strip()), None)
    if var is None:
        return None
    nodelist = environ[var].strip()
    try:
        names = hostlist.expand_hostlist(nodelist, allow_duplicates=True)
    except hostlist.BadHostlist as e:
        raise UsageError(f"{var}={nodelist!r}: not a Slurm hostlist ({e})") from None
    if not names:
        raise UsageError(f"{var}={nodelist!r}: names no nodes")
    for name in names:
        if not _NAME.fullmatch(name):
            raise UsageError(f"{var}={nodelist!r}: {name!r} is not a valid host name")
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise UsageError(f"{var}={nodelist!r}: {dups[0]!r} is listed more than once")
    for count_var in ("SLURM_JOB_NUM_NODES", "SLURM_NNODES"):
        count = environ.get(count_var, "").strip()
        if count:
            if not _UINT.fullmatch(count):
                raise UsageError(f"{count_var}={count!r} is not a number")
            if int(count) != len(names):
                raise UsageError(f"{count_var}={count} but {var}={nodelist!r} names {len(names)} node(s)")
            break
    slots: list[int | None] = [None] * len(names)
    for tasks_var in ("SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE"):
        value = environ.get(tasks_var, "").strip()
        if value:
            counts = _tasks(tasks_var, value)
            if len(counts) == 1:
                counts *= len(names)
            if len(counts) != len(names):
                raise UsageError(f"{tasks_var}={value!r} gives task counts for {len(counts)} node(s), but "
                                 f"{var}={nodelist!r} names {len(names)}")
            slots = list(counts)
            break
    return [HostSpec(name, n) for name, n in zip(names, slots)]


def choose_via(via: str | None, from_allocation: bool, environ: Mapping[str, str]) -> str:
    """How agents start on the hosts: ``srun`` by default when the hosts are the Slurm allocation's (and
    ``SLURM_JOB_ID`` is set), else ``ssh``. ``--via srun`` anywhere else is a usage error."""
    in_job = bool(environ.get("SLURM_JOB_ID", "").strip())
    if via == "srun" and not from_allocation:
        raise UsageError("--via srun: srun starts agents on the Slurm allocation's nodes only; not with --hosts, "
                         "--hostfile or --local, nor outside an allocation" if in_job else
                         "--via srun: not inside a Slurm allocation (SLURM_JOB_ID is not set): run mnp under salloc "
                         "or sbatch, or use --via ssh")
    if via == "srun" and not in_job:
        raise UsageError("--via srun: SLURM_JOB_NODELIST is set but SLURM_JOB_ID is not: not a usable allocation")
    if via is None:
        return "srun" if from_allocation and in_job else "ssh"
    return via
