from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from mnp.errors import HostError, SpecError
from mnp.fabric.ifaces import (
    CommonSubnet,
    Iface,
    common_subnets,
    parse_default_route_devs,
    parse_ip_addr,
    pick_iface,
)

# Trimmed from real `ip -d -j addr` / `ip -j route` output of a network namespace built for this test by hand
# (iproute2 on this machine): veth eth0 as the node's NIC, docker0 + veth, virbr0, bridges without uplinks.
UP = ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"]
DOWN = ["BROADCAST", "MULTICAST", "M-DOWN"]


def link(name: str, flags: list[str], oper: str, kind: str | None = None, master: str | None = None,
         *addrs: str, link_type: str = "ether") -> dict[str, Any]:
    """One entry of `ip -d -j addr`, as iproute2 writes it (only the keys mnp reads)."""
    d: dict[str, Any] = {"ifname": name, "flags": flags, "operstate": oper, "link_type": link_type}
    if master:
        d["master"] = master
    if kind:
        d["linkinfo"] = {"info_kind": kind}
    d["addr_info"] = [{"family": "inet6" if ":" in a else "inet", "local": a.split("/")[0],
                       "prefixlen": int(a.split("/")[1])} for a in addrs]
    return d


LINKS: list[dict[str, Any]] = [
    link("lo", ["LOOPBACK", "UP", "LOWER_UP"], "UNKNOWN", None, None, "127.0.0.1/8", link_type="loopback"),
    link("eth0peer", UP, "UP", "veth"),
    link("eth0", UP, "UP", "veth", None, "10.1.0.5/24", "169.254.7.7/16", "fe80::1/64"),
    link("docker0", UP, "UNKNOWN", "bridge", None, "172.17.0.1/16"),
    link("vethcd34", UP, "UP", "veth"),
    link("vethab12", UP, "UP", "veth", "docker0"),
    link("virbr0", UP, "UNKNOWN", "bridge", None, "192.168.122.1/24"),
    link("br0", UP, "UNKNOWN", "bridge", None, "10.2.0.1/24"),
    link("mnp0n", UP, "UP", "veth"),
    link("mnp0h", UP, "UP", "veth", "br0"),
    link("br1", UP, "UNKNOWN", "bridge", None, "10.3.0.1/24"),
    link("eth1peer", DOWN, "DOWN", "veth"),
    link("eth1", DOWN, "DOWN", "veth", None, "10.4.0.9/24"),
]
ROUTES = json.dumps([{"dst": "default", "gateway": "10.1.0.1", "dev": "eth0", "flags": []},
                     {"dst": "10.1.0.0/24", "dev": "eth0", "protocol": "kernel", "scope": "link", "flags": []}])


def by_addr(ifaces: list[Iface]) -> dict[str, str | None]:
    return {i.address: i.excluded for i in ifaces}


def test_classify_real_shapes() -> None:
    got = by_addr(parse_ip_addr(json.dumps(LINKS), ROUTES))
    assert got == {
        "127.0.0.1": "loopback",
        "10.1.0.5": None,  # a veth's far end, as a node or container sees its NIC: kept
        "169.254.7.7": None,
        "172.17.0.1": "container/VM NAT bridge: its addresses exist on this host only",
        "192.168.122.1": "container/VM NAT bridge: its addresses exist on this host only",
        "10.2.0.1": "bridge with no uplink (ports: only virtual ones)",
        "10.3.0.1": "bridge with no uplink (no ports)",
        "10.4.0.9": "down",
    }


def test_ipv6_only_and_empty_links_give_nothing() -> None:
    assert parse_ip_addr("[]") == []
    assert parse_ip_addr(json.dumps([{"ifname": "x", "flags": ["UP"], "addr_info": [
        {"family": "inet6", "local": "fd00::1", "prefixlen": 64}]}])) == []


def test_bridge_with_physical_port_or_default_route_is_kept() -> None:
    links = [dict(link) for link in LINKS]
    links.append(link("enp5s0", UP, "UP", None, "br1"))
    assert by_addr(parse_ip_addr(json.dumps(links)))["10.3.0.1"] is None
    routes = json.dumps([{"dst": "default", "dev": "br0"}])
    assert by_addr(parse_ip_addr(json.dumps(LINKS), routes))["10.2.0.1"] is None


def test_without_details_bridges_known_by_their_ports() -> None:
    plain = [{k: v for k, v in link.items() if k != "linkinfo"} for link in LINKS]
    got = by_addr(parse_ip_addr(json.dumps(plain)))
    assert got["172.17.0.1"] is not None and got["192.168.122.1"] is not None  # by name
    assert got["10.2.0.1"] is None  # br0's port is named mnp0h: cannot tell it is a veth without -d
    assert got["10.3.0.1"] is None  # a bridge with no ports is invisible as a bridge without -d
    veth_port = [dict(link) for link in plain]
    for link in veth_port:
        if link["ifname"] == "mnp0h":
            link["ifname"] = "veth0001"
    got = by_addr(parse_ip_addr(json.dumps(veth_port)))
    assert got["10.2.0.1"] == "bridge with no uplink (ports: only virtual ones)"


def test_host_end_of_veth_and_no_carrier() -> None:
    links = [
        link("veth9", ["UP", "LOWER_UP"], "UP", None, None, "10.9.0.1/24"),
        link("p0", ["UP", "LOWER_UP"], "UP", "veth", "br9", "10.9.1.1/24"),
        link("ens5", ["NO-CARRIER", "BROADCAST", "UP"], "DOWN", None, None, "10.9.2.1/24"),
        link("tun0", ["POINTOPOINT", "UP", "LOWER_UP"], "UNKNOWN", None, None, "10.9.3.1/32"),
        link("br-0123456789ab", ["UP"], "UNKNOWN", None, None, "172.18.0.1/16"),
    ]
    got = by_addr(parse_ip_addr(json.dumps(links)))
    assert got["10.9.0.1"] == got["10.9.1.1"] == "host end of a veth pair"
    assert got["10.9.2.1"] == "down"
    assert got["10.9.3.1"] is None  # operstate UNKNOWN but UP and LOWER_UP: up
    assert got["172.18.0.1"] is not None


def test_bad_json() -> None:
    with pytest.raises(ValueError, match="not iproute2 JSON"):
        parse_ip_addr("{nope")
    with pytest.raises(ValueError, match="expected a list"):
        parse_ip_addr("{}")
    assert parse_default_route_devs("garbage") == set()


def ifs(*specs: str) -> list[Iface]:
    """'eth0 10.0.0.1/24' or 'docker0 172.17.0.1/16 !' (left out)."""
    out = []
    for s in specs:
        parts = s.split()
        addr, plen = parts[1].split("/")
        out.append(Iface(parts[0], addr, int(plen), None, "left out" if len(parts) > 2 else None))
    return out


def test_common_subnets() -> None:
    per = {0: ifs("eth0 10.0.0.1/24", "eth1 10.1.0.1/24", "docker0 172.17.0.1/16 !"),
           1: ifs("eth0 10.0.0.2/24", "ens6 10.1.0.2/24", "docker0 172.17.0.1/16 !"),
           2: ifs("eth0 10.0.0.3/24", "eth1 10.1.0.3/24")}
    got = common_subnets(per)
    assert got == [CommonSubnet(ipaddress.IPv4Network("10.0.0.0/24"), {0: "eth0", 1: "eth0", 2: "eth0"}),
                   CommonSubnet(ipaddress.IPv4Network("10.1.0.0/24"), {0: "eth1", 1: "ens6", 2: "eth1"})]
    assert got[0].same_name == "eth0" and got[1].same_name is None
    assert common_subnets({}) == []
    assert common_subnets({0: ifs("eth0 10.0.0.1/24"), 1: ifs("eth0 10.0.1.1/24")}) == []


def test_pick_is_deterministic_and_prefers_same_name() -> None:
    per = {0: ifs("eth1 10.1.0.1/24", "eth0 10.0.0.1/24"), 1: ifs("ens6 10.1.0.2/24", "eth0 10.0.0.2/24")}
    c = pick_iface(per)
    assert c.name == "eth0" and c.subnet == "10.0.0.0/24"
    assert c.why == "eth0 (10.0.0.0/24): first of 2 shared subnets"
    assert pick_iface(dict(reversed(per.items()))) == c


def test_pick_prefers_the_control_address_and_avoids_link_local() -> None:
    per = {0: ifs("eth0 10.0.0.1/24", "eth1 10.1.0.1/24"), 1: ifs("eth0 10.0.0.2/24", "eth1 10.1.0.2/24")}
    c = pick_iface(per, prefer_address="10.1.0.1")
    assert c.name == "eth1" and c.why.startswith("eth1 (10.1.0.0/24): holds 10.1.0.1")
    ll = {0: ifs("eth0 169.254.1.1/16", "eth9 10.5.0.1/24"), 1: ifs("eth0 169.254.1.2/16", "eth9 10.5.0.2/24")}
    assert pick_iface(ll).name == "eth9"


def test_pick_when_names_differ() -> None:
    per = {0: ifs("eth0 10.0.0.1/24"), 1: ifs("ens5 10.0.0.2/24")}
    c = pick_iface(per)
    assert c.name is None and c.subnet == "10.0.0.0/24" and c.names == {0: "eth0", 1: "ens5"}
    assert "names differ (node 0: eth0, node 1: ens5)" in c.why and "\n" not in c.why


def test_pick_override() -> None:
    per = {0: ifs("eth0 10.0.0.1/24", "eth1 10.1.0.1/24"), 1: ifs("eth0 10.0.0.2/24", "eth1 10.1.0.2/24")}
    c = pick_iface(per, override="eth1")
    assert (c.name, c.subnet, c.why) == ("eth1", "10.1.0.0/24", "asked for (iface: eth1)")
    with pytest.raises(SpecError, match=r"^iface: 'eth7' is not an IPv4 interface on node 0 "
                                        r"\(it has: eth0 10.0.0.0/24, eth1 10.1.0.0/24\)$"):
        pick_iface(per, override="eth7")
    per[1] = ifs("eth0 10.0.0.2/24", "eth1 10.1.0.2/24 !")
    with pytest.raises(SpecError, match="^iface: 'eth1' on node 1 cannot carry MPI traffic: left out$"):
        pick_iface(per, override="eth1")


def test_pick_no_common_subnet_names_the_node() -> None:
    per = {0: ifs("eth0 10.0.0.1/24"), 1: ifs("eth0 10.0.0.2/24"),
           2: ifs("eth0 10.7.0.3/24", "docker0 10.0.0.9/24 !")}
    with pytest.raises(HostError, match=r"^node 2: shares no IPv4 subnet with node 0 \(node 0: eth0 10.0.0.0/24; "
                                        r"node 2: eth0 10.7.0.0/24\)$"):
        pick_iface(per)


def test_pick_single_node() -> None:
    c = pick_iface({0: ifs("eth1 10.1.0.1/24", "eth0 10.0.0.1/24", "lo 127.0.0.1/8 !")})
    assert c.name == "eth0" and c.why.startswith("one node: eth0")
    with pytest.raises(HostError, match="^node 0: no usable IPv4 interface"):
        pick_iface({0: ifs("lo 127.0.0.1/8 !")})
    with pytest.raises(SpecError):
        pick_iface({})


def test_iface_round_trips_as_dict() -> None:
    i = Iface("eth0", "10.0.0.1", 24, "veth", None)
    assert Iface.from_dict(json.loads(json.dumps(i.to_dict()))) == i
