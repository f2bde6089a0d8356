"""Fabric decisions for one job, on evidence from every node: transport, interface, /dev/shm.

Each agent's hello carries its node's facts (:func:`node_facts`): /dev/shm size and free space, its EFA report,
its kernel release and, where the provider asks (SSH, AWS Batch), its IPv4 interfaces. :func:`decide` turns them
into a :class:`FabricPlan` -- the transport and its environment for the job's MPI family, the interface MPI uses
between nodes and why, rank binding, each node's /dev/shm need (MPI's part and the job's) against what it has --
which the coordinator records in the job (``mnp status``), prints with ``--explain``, and checks before any rank
starts: ``shm_problems`` stop the job (it cannot run), ``warnings`` are to be shown, one line each (it can: a thin
/dev/shm margin, ``shm_warnings``, or more ranks than CPUs, ``oversubscribed``).

Oversubscription is judged per node (its ranks against the CPUs it may use, the node facts' ``cpus``) and per
machine: nodes with the same ``boot_id`` are one kernel, so their ranks share the union of their CPU sets
(``cpu_list``) -- local nodes that each got every CPU, containers on one instance.

When ranks die in MPI start-up, :func:`startup_hint` (or :meth:`FabricPlan.startup_hint`) turns their stderr and
the plan into the words for the failure line: which interface and provider they were given, and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mnp.errors import MnpError
from mnp.fabric.efa import EfaReport
from mnp.fabric.facts import MAX_CPUS, cpu_list, node_facts, parse_cpu_list
from mnp.fabric.shm import fmt_bytes, shm_budget, shm_verdict
from mnp.fabric.transport import TransportChoice, binding_env, choose_transport

__all__ = ["MAX_CPUS", "FabricError", "FabricPlan", "cpu_list", "decide", "node_facts", "oversubscription",
           "parse_cpu_list", "startup_hint"]


class FabricError(MnpError):
    """The nodes cannot run the job as asked (/dev/shm too small, no common interface...)."""


def oversubscription(ranks_per_node: list[int], facts: list[dict[str, Any]], hostnames: list[str],
                     node_cpus: list[int] | None = None) -> dict[int, str]:
    """One line per oversubscribed node (more ranks than its CPUs) or machine (nodes of one kernel whose ranks
    together outnumber the CPUs they share), keyed by the first node concerned."""
    out: dict[int, str] = {}
    groups: dict[str, list[int]] = {}
    for i, f in enumerate(facts):
        cpus = (node_cpus[i] if node_cpus and i < len(node_cpus) else None) or int(f.get("cpus") or 0)
        if cpus and ranks_per_node[i] > cpus:
            out[i] = (f"node {i} ({hostnames[i]}): {ranks_per_node[i]} ranks on {cpus} CPU(s): oversubscribed, "
                      "ranks will take turns on a core (latency and throughput then measure the scheduler)")
        if f.get("boot_id") and f.get("cpu_list"):
            groups.setdefault(str(f["boot_id"]), []).append(i)
    for members in groups.values():
        if len(members) < 2 or any(i in out for i in members):
            continue
        shared: set[int] = set()
        for i in members:
            shared |= parse_cpu_list(str(facts[i]["cpu_list"]))
        total = sum(ranks_per_node[i] for i in members)
        if shared and total > len(shared):
            listed = ", ".join(map(str, members[:8])) + (", ..." if len(members) > 8 else "")
            out[members[0]] = (f"nodes {listed} are one machine: {total} ranks on its {len(shared)} CPU(s), "
                               "oversubscribed, ranks will take turns on a core (latency and throughput then "
                               "measure the scheduler)")
    return out


# What MPI libraries print when MPI_Init fails (MPICH/Intel MPI, Open MPI 4/5, libfabric, PMIx/PRRTE).
_STARTUP = re.compile(r"MPI_Init|MPIR_Init|MPID_Init|MPIDI_OFI|OFI call|fi_getinfo|ofi_init|ompi_mpi_init|opal_init|"
                      r"orte_init|pmix_init|PMIx_Init|mca_bml|btl_tcp|No network interfaces|unable to find .*"
                      r"(interface|reachable)|MPI_COMM_WORLD.*(initiali[sz]|start)|I_MPI_|libfabric", re.IGNORECASE)


def startup_hint(info: dict[str, Any], stderr: str, job_env: dict[str, str] | None = None) -> str | None:
    """When ``stderr`` (the failed rank's last lines) shows an MPI start-up failure, what the ranks were given:
    ``MPI start-up failed with interface eth0 (eth0 (10.0.0.0/24): the only subnet every node shares), transport
    tcp, libfabric provider tcp; FI_PROVIDER=tcp FI_TCP_IFACE=eth0 MPIR_CVAR_CH4_NETMOD=ofi``. ``info``: the job
    record's fabric part (:meth:`FabricPlan.to_info`); ``job_env``: the job's own ``env``, which wins over mnp's
    (its settings are marked). None when the text shows no MPI start-up failure."""
    if not stderr or not _STARTUP.search(stderr):
        return None
    tr = info.get("transport") or {}
    ifc = info.get("iface") or {}
    mine = job_env or {}
    env = {**(tr.get("env") or {}), **mine}
    pins = " ".join(f"{k}={env[k]}" + (" (the job's env)" if k in mine else "") for k in sorted(env)
                    if k in _PIN_VARS)
    where = f"interface {ifc['name']} ({ifc.get('why', '')})" if ifc.get("name") else \
        f"no interface pinned ({ifc.get('why') or 'not probed'}): the MPI picked one"
    prov = f", libfabric provider {tr['provider']}" if tr.get("provider") else ""
    return f"MPI start-up failed with {where}, transport {tr.get('inter_node', '?')}{prov}" + \
        (f"; {pins}" if pins else "")


_PIN_VARS = {"FI_PROVIDER", "FI_TCP_IFACE", "I_MPI_OFI_PROVIDER", "I_MPI_FABRICS", "MPIR_CVAR_CH4_NETMOD",
             "OMPI_MCA_btl", "OMPI_MCA_pml", "OMPI_MCA_mtl", "OMPI_MCA_btl_tcp_if_include",
             "OMPI_MCA_oob_tcp_if_include", "OMPI_MCA_mtl_ofi_provider_include"}


@dataclass
class FabricPlan:
    transport: TransportChoice
    iface: str | None
    iface_why: str
    # node -> total, free, need (bytes: mpi + job), mpi, job, declared (shm_size), parts (in words), problem, warning
    shm: dict[int, dict[str, Any]] = field(default_factory=dict)
    binding: str = "left to the MPI (the nodes do not share cores)"
    oversubscribed: dict[int, str] = field(default_factory=dict)  # node -> one line (see oversubscription())
    bands: dict[str, str] = field(default_factory=dict)  # "within a node" / "between nodes" -> expected cost

    @property
    def shm_problems(self) -> list[str]:
        """Nodes where the job cannot run: stop before any rank starts."""
        return [s["problem"] for s in self.shm.values() if s.get("problem")]

    @property
    def shm_warnings(self) -> list[str]:
        """Nodes where it can, on a thin margin (or a case the figures cannot promise): show, then go on."""
        return [s["warning"] for s in self.shm.values() if s.get("warning") and not s.get("problem")]

    @property
    def warnings(self) -> list[str]:
        """Every line to show before the ranks start: thin /dev/shm margins, then oversubscription."""
        return self.shm_warnings + [v for _, v in sorted(self.oversubscribed.items())]

    def startup_hint(self, stderr: str, job_env: dict[str, str] | None = None) -> str | None:
        """:func:`startup_hint` for this plan."""
        return startup_hint(self.to_info(), stderr, job_env)

    def to_info(self) -> dict[str, Any]:
        t = self.transport
        return {"transport": {"inter_node": t.inter_node, "intra_node": t.intra_node, "why": t.why,
                              "provider": getattr(t, "provider", None), "env": t.env},
                "iface": {"name": self.iface, "why": self.iface_why}, "binding": self.binding,
                "shm": {str(k): v for k, v in self.shm.items()},
                "oversubscribed": {str(k): v for k, v in self.oversubscribed.items()}, "bands": self.bands}

    def explain(self) -> str:
        t = self.transport
        lines = [f"transport: {t.inter_node} between nodes, {t.intra_node} within a node -- {t.why}",
                 f"interface: {self.iface or 'any'} -- {self.iface_why}",
                 f"binding: {self.binding}"]
        if self.bands:
            lines.append("expected 8 B latency, half round trip: " + "; ".join(f"{k}: {v}" for k, v in
                                                                             self.bands.items())
                         + " (mnp doctor measures it)")
        for node, s in sorted(self.shm.items()):
            state = s["problem"] or (f"warning: {s['warning']}" if s.get("warning") else "ok")
            lines.append(f"/dev/shm node {node}: {fmt_bytes(s['free'])} free of {fmt_bytes(s['total'])}, "
                         f"need {fmt_bytes(s['need'])} ({s['parts']}): {state}")
        lines += [f"cpus: {w}" for _, w in sorted(self.oversubscribed.items())]
        if t.env:
            lines.append("environment: " + " ".join(f"{k}={v}" for k, v in sorted(t.env.items())))
        return "\n".join(lines)


def _efa(d: dict[str, Any] | None) -> EfaReport:
    if not d:
        return EfaReport(problem="the node sent no EFA report")
    return EfaReport.from_dict(d)


def decide(family: str, transport: str, job_shm: int | None, facts: list[dict[str, Any]], hostnames: list[str],
           ranks_per_node: list[int], iface_override: str | None = None, known_iface: str | None = None,
           main_address: str | None = None, cpus_shared: bool = False,
           node_cpus: list[int] | None = None) -> FabricPlan:
    """The job's fabric. ``known_iface``: the provider knows it (local nodes: eth0); else it is probed.
    ``cpus_shared``: the nodes share one machine's cores (the cluster says so): rank binding is turned off.
    ``node_cpus``: each node's CPU count, where the facts lack it (default: the facts' ``cpus``)."""
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
                         cpus_shared=cpus_shared, one_rank_per_node=bool(ranks_per_node) and max(ranks_per_node) == 1)
    shm = {}
    for i, f in enumerate(facts):
        need = shm_budget(ranks_per_node[i], family, job_shm)
        total, free = int(f.get("shm_total", 0)), int(f.get("shm_free", 0))
        problem, warning = shm_verdict(f"node {i} ({hostnames[i]})", total, free, need)
        shm[i] = {"total": total, "free": free, "need": need.need, "mpi": need.mpi, "job": need.job,
                  "declared": need.declared, "parts": need.parts(), "problem": problem, "warning": warning}
    return FabricPlan(t, iface, why, shm, binding_env(family, cpus_shared)[1],
                      oversubscription(ranks_per_node, facts, hostnames, node_cpus),
                      _expected_bands(t.inter_node, facts, ranks_per_node))


def _expected_bands(inter_node: str, facts: list[dict[str, Any]], ranks_per_node: list[int]) -> dict[str, str]:
    """What each path of this job should cost (:mod:`mnp.fabric.bands`), for --explain and the record."""
    from mnp.fabric.bands import bands, expected_path

    try:
        table = bands()
    except ValueError as e:
        return {"bands": str(e)}
    out = {}
    if any(r > 1 for r in ranks_per_node):
        out["within a node"] = table["shm"].describe()
    if len(facts) > 1:
        boots = {f.get("boot_id") for f in facts}
        one_machine = len(boots) == 1 and None not in boots
        out["between nodes"] = table[expected_path(False, one_machine, inter_node)].describe()
    return out
