"""Fabric decisions for one job, on evidence from every node: transport, interface, /dev/shm.

Each agent's hello carries its node's facts (:func:`node_facts`): /dev/shm size and free space, its EFA report,
its kernel release and, where the provider asks (SSH, AWS Batch), its IPv4 interfaces. :func:`decide` turns them
into a :class:`FabricPlan` -- the transport and its environment for the job's MPI family, the interface MPI uses
between nodes and why, each node's /dev/shm need against what it has -- which the coordinator records in the job
(``mnp status``), prints with ``--explain``, and checks before any rank starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from mnp.fabric.efa import EfaReport
from mnp.errors import MnpError
from mnp.fabric.shm import check_shm, fmt_bytes, shm_need
from mnp.fabric.transport import TransportChoice, choose_transport

__all__ = ["FabricError", "FabricPlan", "node_facts", "decide"]


class FabricError(MnpError):
    """The nodes cannot run the job as asked (/dev/shm too small, no common interface...)."""


def node_facts(report_ifaces: bool) -> dict[str, Any]:
    """What this node tells the coordinator about its fabric (run by the agent; cheap: sysfs and statvfs)."""
    from mnp.fabric.efa import detect_efa
    from mnp.fabric.shm import shm_free

    try:
        total, free = shm_free("/dev/shm")
    except OSError:
        total = free = 0
    facts: dict[str, Any] = {"shm_total": total, "shm_free": free, "kernel": os.uname().release,
                             "efa": detect_efa().to_dict()}
    if report_ifaces:
        try:
            from mnp.fabric.ifaces import local_ifaces

            facts["ifaces"] = [i.to_dict() for i in local_ifaces()]
        except MnpError as e:
            facts["ifaces_error"] = str(e)
    return facts


@dataclass
class FabricPlan:
    transport: TransportChoice
    iface: str | None
    iface_why: str
    shm: dict[int, dict[str, Any]] = field(default_factory=dict)  # node -> total, free, need, problem

    @property
    def shm_problems(self) -> list[str]:
        return [s["problem"] for s in self.shm.values() if s.get("problem")]

    def to_info(self) -> dict[str, Any]:
        t = self.transport
        return {"transport": {"inter_node": t.inter_node, "intra_node": t.intra_node, "why": t.why,
                              "provider": getattr(t, "provider", None), "env": t.env},
                "iface": {"name": self.iface, "why": self.iface_why},
                "shm": {str(k): v for k, v in self.shm.items()}}

    def explain(self) -> str:
        t = self.transport
        lines = [f"transport: {t.inter_node} between nodes, {t.intra_node} within a node -- {t.why}",
                 f"interface: {self.iface or 'any'} -- {self.iface_why}"]
        for node, s in sorted(self.shm.items()):
            state = s["problem"] or "ok"
            lines.append(f"/dev/shm node {node}: {fmt_bytes(s['free'])} free of {fmt_bytes(s['total'])}, "
                         f"need {fmt_bytes(s['need'])}: {state}")
        if t.env:
            lines.append("environment: " + " ".join(f"{k}={v}" for k, v in sorted(t.env.items())))
        return "\n".join(lines)


def _efa(d: dict[str, Any] | None) -> EfaReport:
    if not d:
        return EfaReport(problem="the node sent no EFA report")
    return EfaReport.from_dict(d)


def decide(family: str, transport: str, job_shm: int | None, facts: list[dict[str, Any]], hostnames: list[str],
           ranks_per_node: list[int], iface_override: str | None = None, known_iface: str | None = None,
           main_address: str | None = None) -> FabricPlan:
    """The job's fabric. ``known_iface``: the provider knows it (local nodes: eth0); else it is probed."""
    n = len(facts)
    subnet = None
    iface: str | None
    if iface_override:
        iface, why = iface_override, "given with --iface"
    elif known_iface:
        iface, why = known_iface, "the local cluster's node interface (veth on the nodes' bridge)"
    elif n > 1 and all("ifaces" in f for f in facts):
        from mnp.fabric.ifaces import Iface, pick_iface

        per_node = {i: [Iface.from_dict(x) for x in f["ifaces"]] for i, f in enumerate(facts)}
        choice = pick_iface(per_node, prefer_address=main_address)
        iface, why, subnet = choice.name, choice.why, choice.subnet
    else:
        iface, why = None, "one node" if n == 1 else "not probed; MPI picks"
    reports = [_efa(f.get("efa")) for f in facts]
    t = choose_transport(family, transport, n, iface=iface, efa_nodes=reports, subnet=subnet,
                         kernel_release=facts[0].get("kernel") if facts else None, node_names=hostnames)
    shm = {}
    for i, f in enumerate(facts):
        need = shm_need(ranks_per_node[i], family, job_shm)
        total, free = int(f.get("shm_total", 0)), int(f.get("shm_free", 0))
        shm[i] = {"total": total, "free": free, "need": need,
                  "problem": check_shm(f"node {i} ({hostnames[i]})", total, free, need)}
    return FabricPlan(t, iface, why, shm)
