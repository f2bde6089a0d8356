"""This node's links, IPv4 addresses and default routes, read from the kernel over rtnetlink.

Every agent reports its interfaces in its hello. Running ``ip -d -j addr`` and ``ip -j route`` for that cost two
processes (about 5 ms of CPU per node, most of a pool's forked agent's start) and needed iproute2, which slim
container images leave out. The same three dumps come straight from the kernel in well under a millisecond.

:func:`parse_links` and :func:`parse_default_devs` are pure over the dump bytes and give what ``ip -d -j addr``
and ``ip -j route`` would say (the keys :mod:`mnp.fabric.ifaces` reads); :func:`dump` is the thin driver.
Layouts are the kernel's UAPI (``linux/netlink.h``, ``linux/rtnetlink.h``, ``linux/if_link.h``,
``linux/if_addr.h``).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from typing import Any

__all__ = ["RTM_GETADDR", "RTM_GETLINK", "RTM_GETROUTE", "dump", "parse_default_devs", "parse_links", "read"]

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP, NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
DUMP_TRIES = 3  # a dump the kernel marks interrupted (links changed meanwhile) is asked for again, this often
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26

_HDR = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_ATTR = struct.Struct("=HH")  # rtattr: length, type
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags

IFLA_IFNAME, IFLA_MASTER, IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_INFO_KIND = 3, 10, 16, 18, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_OIF, RTA_TABLE, RT_TABLE_MAIN = 4, 15, 254
IFF_UP, IFF_BROADCAST, IFF_LOOPBACK, IFF_RUNNING, IFF_MULTICAST, IFF_LOWER_UP = 0x1, 0x2, 0x8, 0x40, 0x1000, 0x10000
ARPHRD_LOOPBACK = 772
_LINK_ATTRS = frozenset({IFLA_IFNAME, IFLA_MASTER, IFLA_OPERSTATE, IFLA_LINKINFO})
_INFO_ATTRS = frozenset({IFLA_INFO_KIND})
_ADDR_ATTRS = frozenset({IFA_ADDRESS, IFA_LOCAL})
_ROUTE_ATTRS = frozenset({RTA_OIF, RTA_TABLE})
_OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")
_FLAG_NAMES = ((IFF_LOOPBACK, "LOOPBACK"), (IFF_BROADCAST, "BROADCAST"), (IFF_MULTICAST, "MULTICAST"),
               (IFF_UP, "UP"), (IFF_LOWER_UP, "LOWER_UP"))


def _align(n: int) -> int:
    return (n + 3) & ~3


def _headers(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """(offset, length, type, flags) of each message header in ``data``, up to one whose length is impossible
    (shorter than a header: that one is yielded, and the walk stops)."""
    at = 0
    while at + _HDR.size <= len(data):
        length, kind, flags, _, _ = _HDR.unpack_from(data, at)
        yield at, length, kind, flags
        if length < _HDR.size:
            return
        at += _align(length)


def messages(data: bytes, want: int) -> Iterator[bytes]:
    """The bodies of the ``want``-type messages in a dump; ValueError for a truncated message or a kernel error."""
    for at, length, kind, _ in _headers(data):
        if length < _HDR.size or at + length > len(data):
            raise ValueError(f"netlink: truncated message at byte {at}")
        body = data[at + _HDR.size:at + length]
        if kind in (NLMSG_ERROR, NLMSG_DONE) and len(body) >= 4 and struct.unpack_from("=i", body)[0] < 0:
            raise ValueError(f"netlink: {os.strerror(-struct.unpack_from('=i', body)[0])}")
        if kind == NLMSG_DONE:
            return
        if kind == want:
            yield body


def attrs(data: bytes, at: int, want: frozenset[int]) -> dict[int, bytes]:
    """The attributes of the types in ``want`` from ``at`` on (the nested and byte-order flags masked off; the
    first of a type wins). Only those are copied: a link carries dozens, statistics most of its bytes."""
    out: dict[int, bytes] = {}
    unpack, end = _ATTR.unpack_from, len(data)
    while at + 4 <= end:
        length, kind = unpack(data, at)
        if length < 4 or at + length > end:
            break
        kind &= 0x3FFF
        if kind in want and kind not in out:
            out[kind] = data[at + 4:at + length]
        at += (length + 3) & ~3
    return out


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _u32(raw: bytes | None) -> int | None:
    return struct.unpack_from("=I", raw)[0] if raw is not None and len(raw) >= 4 else None


def parse_links(links: bytes, addrs: bytes) -> list[dict[str, Any]]:
    """An ``RTM_GETLINK`` dump and an IPv4 ``RTM_GETADDR`` dump -> ``ip -d -j addr``'s entries (``ifname``,
    ``flags``, ``operstate``, ``link_type``, ``master``, ``linkinfo.info_kind``, ``addr_info``)."""
    by_index: dict[int, dict[str, Any]] = {}
    masters: dict[int, int] = {}
    for body in messages(links, RTM_NEWLINK):
        if len(body) < _IFINFO.size:
            continue
        _, arphrd, index, flags, _ = _IFINFO.unpack_from(body)
        a = attrs(body, _IFINFO.size, _LINK_ATTRS)
        names = [name for bit, name in _FLAG_NAMES if flags & bit]
        if flags & IFF_UP and not flags & IFF_RUNNING:
            names.insert(0, "NO-CARRIER")  # as iproute2 says it
        oper = a.get(IFLA_OPERSTATE, b"")
        link: dict[str, Any] = {"ifindex": index, "ifname": _text(a.get(IFLA_IFNAME, b"")), "flags": names,
                                "operstate": _OPERSTATES[oper[0]] if oper and oper[0] < len(_OPERSTATES)
                                else "UNKNOWN",
                                "link_type": "loopback" if arphrd == ARPHRD_LOOPBACK else "ether", "addr_info": []}
        kind = attrs(a[IFLA_LINKINFO], 0, _INFO_ATTRS).get(IFLA_INFO_KIND) if IFLA_LINKINFO in a else None
        if kind:
            link["linkinfo"] = {"info_kind": _text(kind)}
        if (m := _u32(a.get(IFLA_MASTER))) is not None:
            masters[index] = m
        by_index[index] = link
    for index, m in masters.items():
        if m in by_index:
            by_index[index]["master"] = by_index[m]["ifname"]
    for body in messages(addrs, RTM_NEWADDR):
        if len(body) < _IFADDR.size:
            continue
        family, prefixlen, _, _, index = _IFADDR.unpack_from(body)
        a = attrs(body, _IFADDR.size, _ADDR_ATTRS)
        raw = a.get(IFA_LOCAL, a.get(IFA_ADDRESS))
        if family != socket.AF_INET or raw is None or len(raw) != 4 or index not in by_index:
            continue
        by_index[index]["addr_info"].append({"family": "inet", "local": socket.inet_ntoa(raw),
                                             "prefixlen": prefixlen})
    return [by_index[i] for i in sorted(by_index)]


def parse_default_devs(routes: bytes, names: dict[int, str]) -> set[str]:
    """The devices holding an IPv4 default route in the main table (``ip -j route``'s ``dst: default``),
    from an ``RTM_GETROUTE`` dump and the links' names by index."""
    out: set[str] = set()
    for body in messages(routes, RTM_NEWROUTE):
        if len(body) < _RTMSG.size:
            continue
        family, dst_len, _, _, table, _, _, _, _ = _RTMSG.unpack_from(body)
        a = attrs(body, _RTMSG.size, _ROUTE_ATTRS)
        table = _u32(a.get(RTA_TABLE)) or table
        oif = _u32(a.get(RTA_OIF))
        if family == socket.AF_INET and dst_len == 0 and table == RT_TABLE_MAIN and oif in names:
            out.add(names[oif])
    return out


def dump(request: int, family: int = socket.AF_UNSPEC) -> bytes:
    """Every message of one rtnetlink dump (``RTM_GETLINK``, ``RTM_GETADDR``, ``RTM_GETROUTE``), up to and with
    its ``NLMSG_DONE``; asked again while the kernel marks it interrupted (``NLM_F_DUMP_INTR``: the table changed
    during the dump), at most :data:`DUMP_TRIES` times, then the last one as it is (iproute2 says so and goes on).
    OSError when the kernel cannot be asked."""
    for _ in range(DUMP_TRIES):
        data = _dump_once(request, family)
        if not interrupted(data):
            break
    return data


def interrupted(data: bytes) -> bool:
    """Whether any message of a dump carries ``NLM_F_DUMP_INTR``."""
    return any(flags & NLM_F_DUMP_INTR for _, _, _, flags in _headers(data))


def _dump_once(request: int, family: int) -> bytes:
    body = {RTM_GETLINK: _IFINFO.pack(family, 0, 0, 0, 0), RTM_GETADDR: _IFADDR.pack(family, 0, 0, 0, 0),
            RTM_GETROUTE: _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)}[request]
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE) as s:
        s.bind((0, 0))
        s.sendall(_HDR.pack(_HDR.size + len(body), request, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body)
        chunks: list[bytes] = []
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                raise OSError("netlink: the kernel closed the dump")
            chunks.append(chunk)
            if _done(chunk):
                return b"".join(chunks)


def _done(chunk: bytes) -> bool:
    """Whether a datagram holds the dump's end: its last message is ``NLMSG_DONE`` or an error, or it is malformed
    (reading stops; the parser says what is wrong)."""
    last = None
    for _, length, kind, _ in _headers(chunk):
        if length < _HDR.size:
            return True
        last = kind
    return last in (NLMSG_DONE, NLMSG_ERROR)


def read() -> tuple[list[dict[str, Any]], set[str]]:
    """This node's links with their IPv4 addresses, and the devices holding its default route."""
    links = parse_links(dump(RTM_GETLINK), dump(RTM_GETADDR, socket.AF_INET))
    return links, parse_default_devs(dump(RTM_GETROUTE, socket.AF_INET), {ln["ifindex"]: ln["ifname"] for ln in links})
