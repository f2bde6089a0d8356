"""Fabric decisions for one job, on evidence from every node: transport, interface, /dev/shm.

Each agent's hello carries its node's facts (:func:`node_facts`): /dev/shm size and free space, its EFA report,
its kernel release and, where the provider asks (SSH, AWS Batch), its IPv4 interfaces. :func:`decide` turns them
into a :class:`FabricPlan` -- the transport and its environment for the job's MPI family, the interface MPI uses
between nodes and why, rank binding, each node's /dev/shm need (MPI's part and the job's) against what it has --
which the coordinator records in the job (``mnp status``), prints with ``--explain``, and checks before any rank
starts: ``shm_problems`` stop the job (it cannot run), ``shm_warnings`` are to be shown (it can, on a thin margin).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from mnp.errors import MnpError
from mnp.fabric.efa import EfaReport
from mnp.fabric.shm import fmt_bytes, shm_budget, shm_verdict
from mnp.fabric.transport import TransportChoice, binding_env, choose_transport

__all__ = ["FabricError", "FabricPlan", "decide", "node_facts"]


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
    # node -> total, free, need (bytes: mpi + job), mpi, job, declared (shm_size), parts (in words), problem, warning
    shm: dict[int, dict[str, Any]] = field(default_factory=dict)
    binding: str = "left to the MPI (the nodes do not share cores)"

    @property
    def shm_problems(self) -> list[str]:
        """Nodes where the job cannot run: stop before any rank starts."""
        return [s["problem"] for s in self.shm.values() if s.get("problem")]

    @property
    def shm_warnings(self) -> list[str]:
        """Nodes where it can, on a thin margin (or a case the figures cannot promise): show, then go on."""
        return [s["warning"] for s in self.shm.values() if s.get("warning") and not s.get("problem")]

    def to_info(self) -> dict[str, Any]:
        t = self.transport
        return {"transport": {"inter_node": t.inter_node, "intra_node": t.intra_node, "why": t.why,
                              "provider": getattr(t, "provider", None), "env": t.env},
                "iface": {"name": self.iface, "why": self.iface_why}, "binding": self.binding,
                "shm": {str(k): v for k, v in self.shm.items()}}

    def explain(self) -> str:
        t = self.transport
        lines = [f"transport: {t.inter_node} between nodes, {t.intra_node} within a node -- {t.why}",
                 f"interface: {self.iface or 'any'} -- {self.iface_why}",
                 f"binding: {self.binding}"]
        for node, s in sorted(self.shm.items()):
            state = s["problem"] or (f"warning: {s['warning']}" if s.get("warning") else "ok")
            lines.append(f"/dev/shm node {node}: {fmt_bytes(s['free'])} free of {fmt_bytes(s['total'])}, "
                         f"need {fmt_bytes(s['need'])} ({s['parts']}): {state}")
        if t.env:
            lines.append("environment: " + " ".join(f"{k}={v}" for k, v in sorted(t.env.items())))
        return "\n".join(lines)


def _efa(d: dict[str, Any] | None) -> EfaReport:
    if not d:
        return EfaReport(problem="the node sent no EFA report")
    return EfaReport.from_dict(d)


def decide(family: str, transport: str, job_shm: int | None, facts: list[dict[str, Any]], hostnames: list[str],
           ranks_per_node: list[int], iface_override: str | None = None, known_iface: str | None = None,
           main_address: str | None = None, cpus_shared: bool = False) -> FabricPlan:
    """The job's fabric. ``known_iface``: the provider knows it (local nodes: eth0); else it is probed.
    ``cpus_shared``: the nodes share one machine's cores (the cluster says so): rank binding is turned off."""
    n = len(facts)
    subnet = None
    iface: str | None
    if iface_override:
        iface, why = iface_override, "given with --iface"
    elif known_iface:
        iface, why = known_iface, "the local cluster's node interface (veth on the nodes' bridge)"
    elif n > 1 and main_address is not None and main_address.startswith("127."):
        # Nodes that are processes on this machine (--no-isolate): MPI's TCP between them stays on loopback, not
        # on whatever else this machine has (bridges of other jobs come and go: Open MPI 5 failed binding to one).
        iface, why = "lo", "the nodes are processes on this machine (main node at 127.0.0.1): loopback"
    elif n > 1 and all("ifaces" in f for f in facts):
        from mnp.fabric.ifaces import Iface, pick_iface

        per_node = {i: [Iface.from_dict(x) for x in f["ifaces"]] for i, f in enumerate(facts)}
        choice = pick_iface(per_node, prefer_address=main_address)
        iface, why, subnet = choice.name, choice.why, choice.subnet
    else:
        iface, why = None, "one node" if n == 1 else "not probed; MPI picks"
    reports = [_efa(f.get("efa")) for f in facts]
    t = choose_transport(family, transport, n, iface=iface, efa_nodes=reports, subnet=subnet,
                         kernel_release=facts[0].get("kernel") if facts else None, node_names=hostnames,
                         cpus_shared=cpus_shared)
    shm = {}
    for i, f in enumerate(facts):
        need = shm_budget(ranks_per_node[i], family, job_shm)
        total, free = int(f.get("shm_total", 0)), int(f.get("shm_free", 0))
        problem, warning = shm_verdict(f"node {i} ({hostnames[i]})", total, free, need)
        shm[i] = {"total": total, "free": free, "need": need.need, "mpi": need.mpi, "job": need.job,
                  "declared": need.declared, "parts": need.parts(), "problem": problem, "warning": warning}
    return FabricPlan(t, iface, why, shm, binding_env(family, cpus_shared)[1])
