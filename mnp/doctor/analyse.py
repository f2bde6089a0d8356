"""The doctor's analysis, pure: the probe's output in, :class:`~mnp.doctor.report.Check` list out.

The fabric verdicts (``interfaces``, ``transport``, ``shm``) are not decided here: the probe's node facts go to
:func:`mnp.fabric.decide.decide`, the function a launch uses, and its :class:`~mnp.fabric.decide.FabricPlan` is
turned into checks. When ``decide`` refuses -- no interface every node shares (a :class:`~mnp.errors.HostError`),
or a transport the nodes cannot do (a :class:`~mnp.errors.SpecError` on ``transport``) -- that part fails and the
rest is decided again without it (no interface facts: MPI picks; transport ``auto``), so every part gets a verdict.

The probe's pairs are judged by :mod:`mnp.doctor.paths`: the path each took (``paths``) and its latency against
that path's band (``latency``). ``cpus`` warns when the job's ranks would outnumber a node's (or a machine's) CPUs.
"""

from __future__ import annotations

from typing import Any

from mnp.doctor.paths import judge_pairs, latency_check, paths_check
from mnp.doctor.probe_data import SLOW_FACTOR
from mnp.doctor.report import Check, one_line
from mnp.errors import HostError, SpecError
from mnp.fabric.decide import FabricPlan, decide
from mnp.fabric.shm import fmt_bytes

__all__ = ["SKEW_LIMIT_S", "SLOW_CONNECT_MS", "SLOW_FACTOR", "analyse", "mpi_family"]

SKEW_LIMIT_S = 1.0
SLOW_CONNECT_MS = 500.0


def mpi_family(library: str) -> str:
    """The MPI family of a ``MPI_Get_library_version`` line (``auto`` when it is not one mnp knows)."""
    low = library.lower()
    if "open mpi" in low:
        return "openmpi"
    if "intel" in low:
        return "intelmpi"
    if "mpich" in low or "mvapich" in low or "cray" in low:
        return "mpich"
    return "auto"


def analyse(probe: dict[str, Any], *, ranks_per_node: int | None = None, transport: str = "auto",
            job_shm: int | None = None, slots: list[int | None] | None = None, main_address: str | None = None,
            skew_limit_s: float = SKEW_LIMIT_S, slow_factor: float = SLOW_FACTOR,
            slow_connect_ms: float = SLOW_CONNECT_MS) -> list[Check]:
    """Checks from the probe's output. ``ranks_per_node``: the job's (default: ``slots``, else each node's CPUs);
    ``job_shm``: the job's ``shm_size``, if it sets one; ``main_address``: the main node's control address."""
    nodes: list[dict[str, Any]] = probe["nodes"]
    n = len(nodes)
    label = [f"node {i} ({f.get('hostname', '?')})" for i, f in enumerate(nodes)]
    libs = [str(f.get("mpi", "?")) for f in nodes]
    ranks = [ranks_per_node or (slots[i] if slots and i < len(slots) and slots[i] else None) or
             int(f.get("cpus") or 1) for i, f in enumerate(nodes)]
    plan, refused = _decide(nodes, mpi_family(libs[0]), transport, job_shm, ranks, main_address)
    iface, chosen = _fabric(plan, refused, nodes, label, transport)
    return [_clock(probe, label, skew_limit_s), _same("mpi", libs, "MPI library"), _versions(nodes),
            _cpus(plan, nodes, ranks), _shm(plan, label, ranks), iface, chosen,
            *_pairs(probe, plan, slow_factor), _connect(probe, label, slow_connect_ms, n)]


# -- fabric: mnp.fabric.decide's verdicts ---------------------------------------------------------------------------


def _decide(nodes: list[dict[str, Any]], family: str, transport: str, job_shm: int | None, ranks: list[int],
            main_address: str | None) -> tuple[FabricPlan, dict[str, str]]:
    """What a launch would decide on these nodes, and what it refused (``interfaces``/``transport`` -> why)."""
    names = [str(f.get("hostname", "?")) for f in nodes]
    facts, asked = nodes, transport
    refused: dict[str, str] = {}
    while True:
        try:
            return decide(family, asked, job_shm, facts, names, ranks, main_address=main_address), refused
        except SpecError as e:
            if e.field != "transport" or "transport" in refused:
                raise
            refused["transport"] = one_line(str(e))
            asked = "auto"  # never refused: judge the interfaces and /dev/shm all the same
        except HostError as e:  # only the interface pick raises it
            if "interfaces" in refused:
                raise
            refused["interfaces"] = one_line(str(e))
            facts = [{k: v for k, v in f.items() if k != "ifaces"} for f in facts]  # as if not probed


def _fabric(plan: FabricPlan, refused: dict[str, str], nodes: list[dict[str, Any]], label: list[str],
            transport: str) -> tuple[Check, Check]:
    """The ``interfaces`` and ``transport`` checks."""
    unread = [(i, f.get("ifaces_error", "sent no interface list")) for i, f in enumerate(nodes) if "ifaces" not in f]
    if unread and len(nodes) > 1:  # decide() would leave the choice to MPI; the doctor says why it could not look
        iface = Check("interfaces", False, f"{label[unread[0][0]]}: {unread[0][1]}")
    elif "interfaces" in refused:
        iface = Check("interfaces", False, refused["interfaces"])
    else:
        iface = Check("interfaces", True, plan.iface_why, data={"name": plan.iface})
    t = plan.transport
    if "transport" in refused:
        chosen = Check("transport", False, refused["transport"], data={"asked": transport})
    else:
        where = f"{t.inter_node} between nodes, {t.intra_node} within" if len(nodes) > 1 else \
            f"{t.intra_node} (one node)"
        chosen = Check("transport", True, f"{where}: {t.why}",
                       data={"asked": transport, "inter_node": t.inter_node, "intra_node": t.intra_node,
                             "provider": t.provider, "env": t.env})
    return iface, chosen


def _cpus(plan: FabricPlan, nodes: list[dict[str, Any]], ranks: list[int]) -> Check:
    over = [v for _, v in sorted(plan.oversubscribed.items())]
    data = {"ranks": ranks, "cpus": [f.get("cpus") for f in nodes], "oversubscribed": over}
    if over:
        more = f" (and {len(over) - 1} more)" if len(over) > 1 else ""
        return Check("cpus", False, over[0] + more, warn=True, data=data)
    cpus = "/".join(str(f.get("cpus", "?")) for f in nodes[:8]) + ("/..." if len(nodes) > 8 else "")
    counts = "/".join(map(str, sorted(set(ranks))))
    return Check("cpus", True, f"a CPU for every rank: {counts} rank(s) per node, CPUs per node {cpus}", data=data)


def _pairs(probe: dict[str, Any], plan: FabricPlan, factor: float) -> tuple[Check, Check]:
    """The ``paths`` and ``latency`` checks, on the probe's pairs against the bands of their paths."""
    from mnp.fabric.bands import bands

    try:
        table = bands()
    except ValueError as e:
        bad = Check("latency", False, one_line(str(e)))
        return Check("paths", False, "not judged: " + bad.detail), bad
    rows = judge_pairs(probe, plan.transport.inter_node, plan.iface, table)
    return paths_check(rows), latency_check(rows, probe.get("latency_us") or [], factor, probe.get("remeasured"))


def _shm(plan: FabricPlan, label: list[str], ranks: list[int]) -> Check:
    rows = [{"node": i, "ranks": ranks[i], "need": s["need"], "total": s["total"], "free": s["free"]}
            for i, s in sorted(plan.shm.items())]
    data = {"nodes": rows}
    problems = plan.shm_problems
    if problems:
        more = f" (and {len(problems) - 1} more node(s))" if len(problems) > 1 else ""
        return Check("shm", False, problems[0] + more, data=data)
    need = max(r["need"] for r in rows)
    least = min(rows, key=lambda r: r["free"])
    counts = sorted({r["ranks"] for r in rows})
    return Check("shm", True, f"every node has at least {fmt_bytes(least['free'])} free in /dev/shm; the job needs "
                 f"{fmt_bytes(need)} ({'/'.join(map(str, counts))} rank(s) per node)", data=data)


# -- clocks, versions, latency --------------------------------------------------------------------------------------


def _grouped(values: list[str]) -> str:
    groups: dict[str, list[int]] = {}
    for i, v in enumerate(values):
        groups.setdefault(v, []).append(i)
    return "; ".join(f"'{v}' on node(s) {', '.join(map(str, idx[:8]))}{', ...' if len(idx) > 8 else ''}"
                     for v, idx in groups.items())


def _clock(probe: dict[str, Any], label: list[str], limit: float) -> Check:
    offs = [(i, c["offset_s"], c.get("rtt_s", 0.0)) for i, c in enumerate(probe.get("clock", [])) if "offset_s" in c]
    if len(offs) < 2:
        return Check("clock", True, "one node: nothing to compare")
    i, off, rtt = max(offs[1:], key=lambda o: abs(o[1]))
    data = {"offsets_s": [o[1] for o in offs], "limit_s": limit}
    if abs(off) > limit:
        return Check("clock", False, f"{label[i]} is {off:+.3f} s off node 0 (limit {limit:g} s; estimated over "
                     f"MPI, round trip {rtt * 1e6:.0f} us): check chrony/ntpd on it", data=data)
    shown = f"{off * 1e6:+.1f} us" if abs(off) < 1e-3 else f"{off * 1e3:+.3f} ms"
    return Check("clock", True, f"largest offset from node 0: {shown} ({label[i]}; estimated over MPI, round trip "
                 f"{rtt * 1e6:.0f} us)", data=data)


def _same(name: str, values: list[str], what: str) -> Check:
    if len(set(values)) == 1:
        return Check(name, True, f"{values[0]} on every node")
    return Check(name, False, f"{what} differs: {_grouped(values)}")


def _versions(nodes: list[dict[str, Any]]) -> Check:
    pys = [str(f.get("python", "?")).split()[0] for f in nodes]
    mnps = [str(f.get("mnp", "?")) for f in nodes]
    if len(set(pys)) > 1:
        return Check("versions", False, f"Python differs: {_grouped(pys)}")
    if len(set(mnps)) > 1:
        return Check("versions", False, f"mnp differs: {_grouped(mnps)}")
    return Check("versions", True, f"Python {pys[0]}, mnp {mnps[0]} on every node")


def _connect(probe: dict[str, Any], label: list[str], limit_ms: float, n: int) -> Check:
    matrix = probe.get("first_ms") or []
    slow = [(i, j, v) for i, row in enumerate(matrix) for j, v in enumerate(row) if j > i and v is not None and
            v > limit_ms]
    if slow:
        i, j, v = max(slow, key=lambda s: s[2])
        return Check("connect", False, f"{len(slow)} pair(s) took over {limit_ms:g} ms for their first message; "
                     f"worst {label[i]} - {label[j]}: {v / 1e3:.2f} s (connection set-up: ARP, e.g. a full "
                     "neighbour table (net.ipv4.neigh.default.gc_thresh3), a firewall, SYN retries?)", warn=True,
                     data={"slow": [list(s) for s in slow]})
    return Check("connect", True, "one node" if n < 2 else f"every pair's first message within {limit_ms:g} ms",
                 warn=True)
