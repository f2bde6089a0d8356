"""rtnetlink reading of interfaces (mnp.fabric.netlink): it must say what iproute2 says, on this host and in a
namespace holding each kind of link the sorting cares about, and never fail on bad bytes other than cleanly."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import ROOT

from mnp.errors import HostError
from mnp.fabric import ifaces, netlink
from mnp.fabric.ifaces import classify, local_ifaces, parse_ip_addr

needs_ip = pytest.mark.skipif(shutil.which("ip") is None, reason="compares with iproute2")


def _by_iproute2(ns: str | None = None) -> list[ifaces.Iface]:
    pre = ["ip", "-n", ns] if ns else ["ip"]
    addr = subprocess.run([*pre, "-d", "-j", "addr"], capture_output=True, text=True, check=True).stdout
    route = subprocess.run([*pre, "-j", "route"], capture_output=True, text=True, check=True).stdout
    return parse_ip_addr(addr, route)


@needs_ip
@pytest.mark.noroot
def test_this_host_reads_as_iproute2_says() -> None:
    assert local_ifaces() == _by_iproute2()


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"mnp-nltest-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _read_in(ns: str) -> list[ifaces.Iface]:
    """``local_ifaces()`` as a process in network namespace ``ns`` reads it."""
    code = ("import json; from mnp.fabric.ifaces import local_ifaces; "
            "print(json.dumps([i.to_dict() for i in local_ifaces()]))")
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    return [ifaces.Iface.from_dict(d) for d in json.loads(out)]


@needs_ip
@pytest.mark.namespaces
def test_each_kind_of_link_reads_as_iproute2_says(netns: str) -> None:
    script = "\n".join([
        "link set lo up",
        "link add eth0 type veth peer name eth0peer", "addr add 10.1.0.5/24 dev eth0",
        "addr add 169.254.7.7/16 dev eth0", "link set eth0 up", "link set eth0peer up",
        "route add default via 10.1.0.1 dev eth0",
        "link add docker0 type bridge", "addr add 172.17.0.1/16 dev docker0", "link set docker0 up",
        "link add br0 type bridge", "addr add 10.2.0.1/24 dev br0", "link set br0 up",
        "link add mnp0n type veth peer name mnp0h", "link set mnp0h master br0", "link set mnp0h up",
        "link set mnp0n up",
        "link add br1 type bridge", "addr add 10.3.0.1/24 dev br1", "link set br1 up",
        "link add dn0 type veth peer name dn0p", "addr add 10.4.0.9/24 dev dn0",  # left down
        "link add vethx type veth peer name vethy", "addr add 10.5.0.1/24 dev vethx", "link set vethx up",
        "link set vethy down",  # vethx: up, without carrier
    ])
    subprocess.run(["ip", "-n", netns, "-batch", "-"], input=script, text=True, check=True)
    got = _read_in(netns)
    assert got == _by_iproute2(netns)
    why = {i.address: i.excluded for i in got}
    assert why == {
        "127.0.0.1": "loopback",
        "10.1.0.5": None, "169.254.7.7": None,
        "172.17.0.1": "container/VM NAT bridge: its addresses exist on this host only",
        "10.2.0.1": "bridge with no uplink (ports: only virtual ones)",
        "10.3.0.1": "bridge with no uplink (no ports)",
        "10.4.0.9": "down",
        "10.5.0.1": "down",  # NO-CARRIER comes before the veth's name
    }
    assert {i.name: i.kind for i in got}["br0"] == "bridge"
    assert {i.name: i.kind for i in got}["eth0"] == "veth"


def _msg(kind: int, body: bytes, flags: int = 2) -> bytes:
    data = struct.pack("=IHHII", 16 + len(body), kind, flags, 1, 0) + body
    return data + b"\0" * (-len(data) % 4)


def _attr(kind: int, value: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(value), kind) + value
    return data + b"\0" * (-len(data) % 4)


def _link(index: int, name: str, flags: int, *extra: bytes) -> bytes:
    return _msg(netlink.RTM_NEWLINK, struct.pack("=BxHiII", 0, 1, index, flags, 0)
                + _attr(netlink.IFLA_IFNAME, name.encode() + b"\0") + b"".join(extra))


def _addr(index: int, address: str, prefixlen: int) -> bytes:
    return _msg(netlink.RTM_NEWADDR, struct.pack("=BBBBI", socket.AF_INET, prefixlen, 0, 0, index)
                + _attr(netlink.IFA_LOCAL, socket.inet_aton(address)))


DONE = _msg(netlink.NLMSG_DONE, struct.pack("=i", 0))
UP = netlink.IFF_UP | netlink.IFF_RUNNING | netlink.IFF_LOWER_UP


@pytest.mark.noroot
def test_a_built_dump_parses_to_iproute2s_shape() -> None:
    kind = _attr(netlink.IFLA_LINKINFO | 0x8000, _attr(netlink.IFLA_INFO_KIND, b"veth\0"))
    links = (_link(1, "lo", UP | netlink.IFF_LOOPBACK) + _link(2, "br0", UP, _attr(netlink.IFLA_OPERSTATE, b"\x06"))
             + _link(3, "p0", UP, kind, _attr(netlink.IFLA_MASTER, struct.pack("=I", 2))) + DONE)
    addrs = _addr(2, "10.2.0.1", 24) + _addr(9, "10.9.9.9", 8) + DONE  # index 9: no such link, skipped
    got = netlink.parse_links(links, addrs)
    assert [ln["ifname"] for ln in got] == ["lo", "br0", "p0"]
    assert got[1]["operstate"] == "UP" and got[1]["addr_info"] == [{"family": "inet", "local": "10.2.0.1",
                                                                     "prefixlen": 24}]
    assert got[2]["master"] == "br0" and got[2]["linkinfo"] == {"info_kind": "veth"}
    assert "LOOPBACK" in got[0]["flags"]
    assert classify(got, set())[0].excluded == "bridge with no uplink (ports: only virtual ones)"
    route = _msg(netlink.RTM_NEWROUTE, struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 254, 0, 0, 1, 0)
                 + _attr(netlink.RTA_OIF, struct.pack("=I", 2)))
    other_table = _msg(netlink.RTM_NEWROUTE, struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 100, 0, 0, 1, 0)
                       + _attr(netlink.RTA_OIF, struct.pack("=I", 3)))
    assert netlink.parse_default_devs(route + other_table + DONE, {2: "br0", 3: "p0"}) == {"br0"}
    assert classify(got, {"br0"})[0].excluded is None  # a bridge holding the default route has an uplink


@pytest.mark.noroot
def test_a_kernel_error_and_a_truncated_dump_are_value_errors() -> None:
    with pytest.raises(ValueError, match="Permission denied"):
        list(netlink.messages(_msg(netlink.NLMSG_ERROR, struct.pack("=i", -13)), netlink.RTM_NEWLINK))
    whole = _link(1, "lo", UP) + DONE
    with pytest.raises(ValueError, match="truncated"):
        netlink.parse_links(whole[:20], DONE)


@pytest.mark.noroot
def test_an_interrupted_dump_is_asked_again_and_a_failed_one_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    clean = _link(1, "lo", UP) + DONE
    marked = _msg(netlink.RTM_NEWLINK, _link(1, "lo", UP)[16:], flags=2 | netlink.NLM_F_DUMP_INTR) + DONE
    assert netlink.interrupted(marked) and not netlink.interrupted(clean)
    answers = [marked, marked, clean]
    monkeypatch.setattr(netlink, "_dump_once", lambda *_: answers.pop(0))  # the table changed twice meanwhile
    assert netlink.dump(netlink.RTM_GETLINK) == clean and not answers
    answers[:] = [marked] * netlink.DUMP_TRIES
    assert netlink.dump(netlink.RTM_GETLINK) == marked  # still changing: the last one, as iproute2 goes on
    with pytest.raises(ValueError, match="Device or resource busy"):  # NLMSG_DONE carrying an error (-EBUSY)
        netlink.parse_links(_link(1, "lo", UP) + _msg(netlink.NLMSG_DONE, struct.pack("=i", -16)), DONE)


@pytest.mark.noroot
def test_random_bytes_give_links_or_a_value_error_never_another_exception() -> None:
    real = netlink.dump(netlink.RTM_GETLINK)
    addrs = netlink.dump(netlink.RTM_GETADDR, socket.AF_INET)
    rng = random.Random(7)
    for _ in range(3000):
        data = bytearray(real)
        for _ in range(rng.randint(1, 12)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[:rng.randrange(len(data))]
        try:
            links = netlink.parse_links(bytes(data), addrs)
            netlink.parse_default_devs(bytes(data), {1: "lo"})
            classify(links, set())
        except ValueError:
            pass


@pytest.mark.noroot
def test_no_netlink_is_one_line_naming_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*_: object) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(netlink, "dump", refused)  # a seccomp profile that forbids AF_NETLINK sockets
    with pytest.raises(HostError, match=r"cannot list interfaces over rtnetlink: .*Permission denied"):
        local_ifaces()
