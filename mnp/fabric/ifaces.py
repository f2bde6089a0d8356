"""This node's IPv4 interfaces, which of them can carry MPI traffic between nodes, and which one to use.

The wrong interface is the classic way a multi-node MPI job hangs (docker0, virbr0, a NAT'ed NIC picked by the
library: horovod 195/415, ompi 6377/4963). So interfaces are read from the kernel over rtnetlink
(:mod:`mnp.fabric.netlink`, what ``ip -d -j addr`` shows) and sorted into usable and left out, with the reason:

- loopback; interfaces that are not up (no ``UP`` flag, ``NO-CARRIER``, operstate ``DOWN``);
- container and VM NAT bridges known by name: ``docker0``, Docker networks ``br-<12 hex>``, ``virbr*``
  (libvirt), ``lxcbr*``, ``podman*`` -- their addresses exist on this host only;
- the host end of a veth pair (``veth*``, or a veth enslaved to a bridge); the far end of a pair, moved into a
  container or node namespace, is that node's NIC and stays;
- any other bridge with no uplink: when none of its ports is a physical NIC (only veths, taps), or it has no
  ports at all, nothing outside the host reaches it -- unless ``routes`` show it carries the default route.
  A bridge is known by ``-d``'s kind, or without ``-d`` by other links naming it as their ``master`` (a bridge
  with no ports is then not recognisable).

The sorting is pure over links in iproute2's JSON shape (:func:`classify`; :func:`parse_ip_addr` reads that
JSON) so it is tested without a network; :func:`local_ifaces` asks the kernel.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mnp.errors import HostError, SpecError

__all__ = [
    "CommonSubnet",
    "Iface",
    "IfaceChoice",
    "common_subnets",
    "local_ifaces",
    "parse_default_route_devs",
    "parse_ip_addr",
    "pick_iface",
    "usable",
]

_NAT_BRIDGE = re.compile(r"docker0|br-[0-9a-f]{12}|virbr\d+(-nic)?|lxcbr\d+|podman\d+")
_VIRTUAL_PORT_KINDS = {"veth", "tun", "tap", "vxlan", "dummy", "macvtap", "ipvlan"}
_VIRTUAL_PORT_NAME = re.compile(r"(veth|tap|vnet|tun)\S*")  # what a port is called when -d did not say


@dataclass(frozen=True)
class Iface:
    """One IPv4 address on one interface. ``excluded`` is None when it may carry MPI traffic."""

    name: str
    address: str
    prefixlen: int
    kind: str | None = None  # linkinfo info_kind: veth, bridge, vlan, ... (None: a plain device, or no -d)
    excluded: str | None = None

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Interface(f"{self.address}/{self.prefixlen}").network

    @property
    def link_local(self) -> bool:
        return ipaddress.IPv4Address(self.address).is_link_local

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "prefixlen": self.prefixlen, "kind": self.kind,
                "excluded": self.excluded}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Iface:
        return cls(str(d["name"]), str(d["address"]), int(d["prefixlen"]), d.get("kind"), d.get("excluded"))


def _kind(link: Mapping[str, Any]) -> str | None:
    info = link.get("linkinfo")
    if isinstance(info, Mapping):
        k = info.get("info_kind")
        return str(k) if k else None
    return None


def parse_default_route_devs(routes_json: str) -> set[str]:
    """Devices holding a default route, from ``ip -j route`` output."""
    try:
        routes = json.loads(routes_json or "[]")
    except json.JSONDecodeError:
        return set()
    return {str(r["dev"]) for r in routes if isinstance(r, Mapping) and r.get("dst") == "default" and r.get("dev")}


def parse_ip_addr(text: str, routes_json: str | None = None) -> list[Iface]:
    """Every IPv4 address in ``ip [-d] -j addr`` output, each marked usable or left out (with the reason).

    With ``-d`` (linkinfo present) veths and bridges are known by kind; without it only by name.
    ``routes_json`` (``ip -j route``) lets a bridge that carries the default route count as having an uplink.
    """
    try:
        links = json.loads(text or "[]")
    except json.JSONDecodeError as e:
        raise ValueError(f"not iproute2 JSON: {e}") from None
    if not isinstance(links, list):
        raise ValueError("not iproute2 JSON: expected a list of links")  # noqa: TRY004 -- bad input, not a bad call
    return classify(links, parse_default_route_devs(routes_json) if routes_json else set())


def classify(links: list[Any], default_devs: set[str]) -> list[Iface]:
    """Links in ``ip -d -j addr``'s shape (from iproute2's JSON, or :mod:`mnp.fabric.netlink`) -> every IPv4
    address, marked usable or left out with the reason; ``default_devs`` hold the default route."""
    ports: dict[str, list[bool]] = {}  # bridge -> for each port: is it virtual (veth, tap, ...)?
    for link in links:
        if isinstance(link, Mapping) and link.get("master"):
            k = _kind(link)
            virtual = k in _VIRTUAL_PORT_KINDS if k else bool(_VIRTUAL_PORT_NAME.fullmatch(str(link.get("ifname"))))
            ports.setdefault(str(link["master"]), []).append(virtual)
    out: list[Iface] = []
    for link in links:
        if not isinstance(link, Mapping):
            continue
        name = str(link.get("ifname", ""))
        kind = _kind(link)
        flags = set(link.get("flags") or [])
        why: str | None = None
        if "LOOPBACK" in flags or link.get("link_type") == "loopback":
            why = "loopback"
        elif "UP" not in flags or "NO-CARRIER" in flags or link.get("operstate") == "DOWN":
            why = "down"
        elif _NAT_BRIDGE.fullmatch(name):
            why = "container/VM NAT bridge: its addresses exist on this host only"
        elif (kind == "veth" and link.get("master")) or name.startswith("veth"):
            why = "host end of a veth pair"
        elif (kind == "bridge" or name in ports) and name not in default_devs:
            port_virtual = ports.get(name, [])
            if all(port_virtual):
                why = ("bridge with no uplink (ports: only virtual ones)" if port_virtual
                       else "bridge with no uplink (no ports)")
        for a in link.get("addr_info") or []:
            if not isinstance(a, Mapping) or a.get("family") != "inet" or not a.get("local"):
                continue
            out.append(Iface(name, str(a["local"]), int(a.get("prefixlen", 32)), kind, why))
    return out


def local_ifaces() -> list[Iface]:
    """This node's IPv4 interfaces, asked of the kernel over rtnetlink (what ``ip -d -j addr`` and ``ip -j route``
    would say; no process is started and iproute2 need not be installed)."""
    from mnp.fabric import netlink

    try:
        links, default_devs = netlink.read()
    except (OSError, ValueError) as e:
        raise HostError(_hostname(), f"cannot list interfaces over rtnetlink: {e}") from None
    return classify(links, default_devs)


def _hostname() -> str:
    return socket.gethostname()


def usable(ifaces: Iterable[Iface]) -> list[Iface]:
    return [i for i in ifaces if i.excluded is None]


@dataclass(frozen=True)
class CommonSubnet:
    """A subnet every node has a usable address in, with each node's interface name in it."""

    network: ipaddress.IPv4Network
    names: dict[int, str] = field(default_factory=dict)

    @property
    def same_name(self) -> str | None:
        """The interface name when it is the same on every node (what ``FI_TCP_IFACE`` needs)."""
        names = set(self.names.values())
        return names.pop() if len(names) == 1 else None


def common_subnets(per_node: Mapping[int, Iterable[Iface]]) -> list[CommonSubnet]:
    """Subnets in which every node has a usable address, sorted by network. Empty when there is none."""
    if not per_node:
        return []
    by_node: dict[int, dict[ipaddress.IPv4Network, str]] = {}
    for node, ifaces in per_node.items():
        nets: dict[ipaddress.IPv4Network, str] = {}
        for i in sorted(usable(ifaces), key=lambda i: (i.name, i.address)):
            nets.setdefault(i.network, i.name)
        by_node[node] = nets
    shared = set.intersection(*(set(n) for n in by_node.values()))
    return [CommonSubnet(net, {node: by_node[node][net] for node in sorted(by_node)}) for net in sorted(shared)]


@dataclass(frozen=True)
class IfaceChoice:
    """The interface MPI traffic between nodes should use. ``name`` is None only when the chosen subnet's
    interface names differ between nodes (then ``subnet`` is what works everywhere, e.g. for Open MPI)."""

    name: str | None
    why: str
    subnet: str | None = None
    names: dict[int, str] = field(default_factory=dict)


def _describe(per_node: Mapping[int, Iterable[Iface]], node: int) -> str:
    ifs = [f"{i.name} {i.network}" for i in usable(per_node[node])]
    return ", ".join(ifs) if ifs else "no usable IPv4 interface"


def pick_iface(per_node: Mapping[int, Iterable[Iface]], override: str | None = None,
               prefer_address: str | None = None, field_name: str = "iface") -> IfaceChoice:
    """Choose deterministically, or honour ``override`` (an interface name every node must have up).

    Order among subnets every node shares: the one holding ``prefer_address`` (e.g. the main node's control
    address) first, then not link-local, then the same interface name on every node, then by name and network.
    """
    nodes = {n: list(v) for n, v in per_node.items()}
    if not nodes:
        raise SpecError(field_name, "no nodes to choose an interface for")
    if override:
        names: dict[int, str] = {}
        nets: set[ipaddress.IPv4Network] = set()
        for node in sorted(nodes):
            mine = [i for i in nodes[node] if i.name == override]
            if not mine:
                raise SpecError(field_name, f"'{override}' is not an IPv4 interface on node {node} "
                                f"(it has: {_describe(nodes, node)})")
            if all(i.excluded for i in mine):
                raise SpecError(field_name, f"'{override}' on node {node} cannot carry MPI traffic: "
                                f"{mine[0].excluded}")
            names[node] = override
            nets.update(i.network for i in mine if not i.excluded)
        subnet = str(min(nets)) if len(nets) == 1 else None
        return IfaceChoice(override, f"asked for ({field_name}: {override})", subnet, names)
    if len(nodes) == 1:
        (node, ifaces), = nodes.items()
        ok = sorted(usable(ifaces), key=lambda i: (i.link_local, i.name, i.address))
        if prefer_address:
            ok.sort(key=lambda i: ipaddress.IPv4Address(prefer_address) not in i.network)
        if not ok:
            raise HostError(f"node {node}", "no usable IPv4 interface (only loopback, down or host-only ones)")
        top = ok[0]
        return IfaceChoice(top.name, f"one node: {top.name} ({top.network}) is its first usable interface",
                           str(top.network), {node: top.name})
    shared = common_subnets(nodes)
    if not shared:
        first = min(nodes)
        for node in sorted(nodes):
            if node == first:
                continue
            if not common_subnets({first: nodes[first], node: nodes[node]}):
                raise HostError(f"node {node}", f"shares no IPv4 subnet with node {first} (node {first}: "
                                f"{_describe(nodes, first)}; node {node}: {_describe(nodes, node)})")
        raise HostError(f"node {first}", "no IPv4 subnet is common to every node")
    pref = ipaddress.IPv4Address(prefer_address) if prefer_address else None

    def key(s: CommonSubnet) -> tuple[bool, bool, bool, str, ipaddress.IPv4Network]:
        return (not (pref is not None and pref in s.network), s.network.is_link_local, s.same_name is None,
                s.same_name or "", s.network)

    best = min(shared, key=key)
    reasons = []
    if pref is not None and pref in best.network:
        reasons.append(f"holds {pref}")
    if len(shared) > 1:
        reasons.append(f"first of {len(shared)} shared subnets")
    else:
        reasons.append("the only subnet every node shares")
    if best.same_name:
        why = f"{best.same_name} ({best.network}): " + ", ".join(reasons)
    else:
        listed = ", ".join(f"node {n}: {nm}" for n, nm in best.names.items())
        why = (f"{best.network}: " + ", ".join(reasons) + f"; interface names differ ({listed}), so no single "
               "FI_TCP_IFACE fits")
    return IfaceChoice(best.same_name, why, str(best.network), dict(best.names))
