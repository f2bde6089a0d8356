"""``mnp doctor``: check a cluster before a job burns an allocation, with mnp's own launch machinery.

:func:`run_doctor` launches :mod:`mnp.doctor.probe` on the nodes (one rank per node, as ``mnp launch`` would start a
job there), reads the probe's ``MNP-PROBE`` line from the job's kept rank-0 log and hands it to :func:`analyse`,
which is pure: facts in, :class:`Check` list out. Checks:

- ``reachability``: every node ran the probe. A host that cannot be reached or set up fails it, and a probe that
  could not run or failed is a failed ``probe`` check; either is then the only check;
- ``clock``: each node's clock against node 0's, estimated NTP-like over MPI; more than 1 s off fails;
- ``mpi``, ``versions``: the MPI library (first line of ``MPI_Get_library_version``), Python and mnp are the same
  everywhere;
- ``shm``: /dev/shm on each node against :func:`mnp.fabric.shm.shm_need` for the job's ranks per node;
- ``interfaces``: a subnet every node shares, and the interface MPI would use (:func:`mnp.fabric.ifaces.pick_iface`);
- ``transport``: what :func:`mnp.fabric.transport.choose_transport` would decide for the asked transport, and why;
- ``latency``, ``connect``: pairs slower than 3x the median half round trip, and first messages that took over
  0.5 s (connection set-up). These two only warn: a launch still works, just slowly.

Isolated local nodes get a /dev/shm made for each job, so the probe's is made the size the job's would be and the
``shm`` check shows that the mount took; on SSH hosts (and plain local processes) it is the machine's own.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mnp.cli.main import node_source_options, nodes_from_options

from mnp.doctor.probe import PREFIX, SLOW_FACTOR, slow_pairs

if TYPE_CHECKING:
    from mnp.cluster.ssh import SshOptions
    from mnp.cluster.hosts import HostSpec

__all__ = [
    "SKEW_LIMIT_S",
    "SLOW_CONNECT_MS",
    "SLOW_FACTOR",
    "Check",
    "DoctorReport",
    "DoctorRequest",
    "analyse",
    "doctor",
    "read_probe",
    "render",
    "run_doctor",
    "slow_pairs",
]

SKEW_LIMIT_S = 1.0
SLOW_CONNECT_MS = 500.0
PROBE_SHM = 1 << 20  # what the probe asks of SSH hosts' /dev/shm: next to nothing; the job's need is checked here


@dataclass
class Check:
    """One verdict. ``warn``: a failure that does not stop a launch (slow pairs)."""

    name: str
    ok: bool
    detail: str
    warn: bool = False
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "warn": self.warn, "detail": self.detail, "data": self.data}


@dataclass
class DoctorRequest:
    nodes: int | None = None  # local nodes: default 2; hosts: default all of them
    hosts: list[HostSpec] | None = None  # None: isolated local nodes
    ssh: SshOptions | None = None
    isolate: bool | None = None
    ranks_per_node: int | None = None  # the job's; default: each host's slots, else its CPU count
    transport: str = "auto"
    home: Path | None = None
    timeout_s: float = 120.0
    join_timeout_s: float = 120.0


@dataclass
class DoctorReport:
    checks: list[Check]
    probe: dict[str, Any] | None = None  # the probe's own output (None when it did not run)
    job_id: str | None = None
    nodes: list[dict[str, Any]] = field(default_factory=list)  # index, hostname, address (from the launch)
    wall_s: float = 0.0
    interrupted: int | None = None  # the exit status when Ctrl-C or a signal stopped the probe (130, 143...)

    @property
    def ok(self) -> bool:
        """False when a launch would fail: any failed check except those that only warn."""
        return all(c.ok or c.warn for c in self.checks)

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def to_json(self) -> dict[str, Any]:
        p = self.probe or {}
        clock = p.get("clock") or []
        nodes = [{**(self.nodes[i] if i < len(self.nodes) else {"index": i}), **facts,
                  **(clock[i] if i < len(clock) else {})} for i, facts in enumerate(p.get("nodes", []))]
        return {"ok": self.ok, "job_id": self.job_id, "wall_s": round(self.wall_s, 3), "nodes": nodes,
                "checks": [c.to_json() for c in self.checks], "latency_us": p.get("latency_us"),
                "first_ms": p.get("first_ms"), "remeasured": p.get("remeasured")}


# -- running the probe ---------------------------------------------------------------------------------------------


def run_doctor(req: DoctorRequest) -> DoctorReport:
    """Launch the probe on the nodes and analyse what it found. Usage errors raise; anything else is a check."""
    import time

    from mnp.cluster.local import namespaces_available
    from mnp.coordinator.job import LaunchRequest, launch
    from mnp.errors import ClusterError, HostError, MnpError, UsageError
    from mnp.fabric.shm import shm_need
    from mnp.spec.model import spec_from_dict
    from mnp.fabric.transport import TRANSPORTS

    if req.transport not in TRANSPORTS:
        raise UsageError(f"--transport: '{req.transport}' is not one of " + ", ".join(TRANSPORTS))
    if req.ranks_per_node is not None and req.ranks_per_node < 1:
        raise UsageError(f"--ranks-per-node: must be at least 1, got {req.ranks_per_node}")
    n = req.nodes or (len(req.hosts) if req.hosts else 2)
    python = (req.ssh.remote_python if req.ssh and req.ssh.remote_python else None) or sys.executable
    # The probe runs over what the job would get where that can work (efa only with EFA everywhere, shm on one
    # node): auto picks it; the asked transport is judged from the nodes' facts.
    fields: dict[str, Any] = {"name": "mnp-doctor", "command": [python, "-m", "mnp.doctor.probe"], "ranks_per_node": 1,
                              "transport": req.transport if req.transport in ("auto", "tcp") else "auto",
                              "nodes": n, "timeout": req.timeout_s}
    # Isolated local nodes get a /dev/shm made for each job: the probe's is made the size the job's would be.
    # Elsewhere (hosts, plain local processes) /dev/shm is the machine's own, checked against the job's need here;
    # the probe itself asks for next to nothing, so that launching it never stops at the /dev/shm check.
    isolated = req.hosts is None and req.isolate is not False and namespaces_available()
    fields["shm_size"] = shm_need(req.ranks_per_node or _local_cpus(), "mpich", None) if isolated else PROBE_SHM
    spec = spec_from_dict(fields)
    t0 = time.monotonic()
    try:  # the probe's output is data, kept in the job's log, not something to show
        result = launch(LaunchRequest(spec=spec, nodes=n, isolate=req.isolate, echo=False, grace_s=2.0,
                                      hosts=req.hosts, ssh=req.ssh, home=req.home,
                                      join_timeout_s=req.join_timeout_s))
    except UsageError:
        raise
    except (HostError, ClusterError) as e:  # a host that cannot be reached or set up: the message names it
        return DoctorReport([Check("reachability", False, _line(str(e)))], wall_s=time.monotonic() - t0)
    except MnpError as e:
        return DoctorReport([Check("probe", False, _line(f"the probe could not start: {e}"))],
                            wall_s=time.monotonic() - t0)
    wall = time.monotonic() - t0
    logs = Path(result.dir) / "logs"
    if result.state != "SUCCEEDED":
        why = _stderr_hint(logs)
        stopped = result.exit_code if result.reason.startswith("interrupted") else None
        return DoctorReport([Check("probe", False, _line(f"the probe job {result.job_id} failed: {result.reason}"
                                                         + (f" ({why})" if why and not stopped else "")))],
                            job_id=result.job_id, nodes=result.nodes, wall_s=wall, interrupted=stopped)
    probe = read_probe(logs / "node0.rank0.out")
    if probe is None:
        return DoctorReport([Check("probe", False, f"the probe printed no MNP-PROBE line "
                                   f"(see {logs / 'node0.rank0.out'})")], job_id=result.job_id, nodes=result.nodes,
                            wall_s=wall)
    names = ", ".join(f"{nd['hostname']} {nd['address']}" for nd in result.nodes[:4])
    more = f", ... ({len(result.nodes) - 4} more)" if len(result.nodes) > 4 else ""
    reach = Check("reachability", True, f"{len(result.nodes)} node(s) ran the probe: {names}{more}",
                  data={"measured_over": _measured_over(result.job_id, req.home)})
    slots = [h.slots for h in req.hosts[:n]] if req.hosts else None
    main = result.nodes[0]["address"] if result.nodes else None
    checks = analyse(probe, ranks_per_node=req.ranks_per_node, transport=req.transport, slots=slots,
                     main_address=main)
    return DoctorReport([reach, *checks], probe, result.job_id, result.nodes, wall)


def read_probe(path: Path) -> dict[str, Any] | None:
    """The probe's JSON from its rank-0 stdout log; None when the line is not there."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    for ln in text.splitlines():
        if ln.startswith(PREFIX):
            try:
                data = json.loads(ln[len(PREFIX):])
            except json.JSONDecodeError:
                return None
            return data if isinstance(data, dict) else None
    return None


def _local_cpus() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _line(text: str) -> str:
    return " ".join(text.split())


def _stderr_hint(logs: Path) -> str:
    """The last line some rank wrote to stderr (a Python traceback's last line names the problem)."""
    for p in sorted(logs.glob("*.err")):
        try:
            lines = [ln.strip() for ln in p.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            continue
        if lines:
            return f"{p.name}: {lines[-1][:200]}"
    return ""


def _measured_over(job_id: str, home: Path | None) -> dict[str, Any] | None:
    """The transport the probe itself ran over, from its job record."""
    from mnp.errors import MnpError
    from mnp.records import Records

    try:
        records = Records(home)
        try:
            tr = records.get(job_id).info.get("transport")
        finally:
            records.close()
    except MnpError:
        return None
    return {"inter_node": tr.get("inter_node"), "env": tr.get("env", {})} if isinstance(tr, dict) else None


# -- analysis (pure) -----------------------------------------------------------------------------------------------


def _family(library: str) -> str:
    low = library.lower()
    if "open mpi" in low:
        return "openmpi"
    if "intel" in low:
        return "intelmpi"
    if "mpich" in low or "mvapich" in low or "cray" in low:
        return "mpich"
    return "auto"


def _grouped(values: list[str]) -> str:
    groups: dict[str, list[int]] = {}
    for i, v in enumerate(values):
        groups.setdefault(v, []).append(i)
    return "; ".join(f"'{v}' on node(s) {', '.join(map(str, idx[:8]))}{', ...' if len(idx) > 8 else ''}"
                     for v, idx in groups.items())


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
    family = _family(libs[0])
    return [_clock(probe, label, skew_limit_s), _same("mpi", libs, "MPI library"), _versions(nodes),
            _shm(nodes, label, family, ranks_per_node, job_shm, slots),
            *_fabric(nodes, label, family, transport, main_address),
            _latency(probe, slow_factor), _connect(probe, label, slow_connect_ms, n)]


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


def _shm(nodes: list[dict[str, Any]], label: list[str], family: str, rpn: int | None, job_shm: int | None,
         slots: list[int | None] | None) -> Check:
    from mnp.fabric.shm import check_shm, fmt_bytes, shm_need

    problems, rows = [], []
    for i, f in enumerate(nodes):
        ranks = rpn or (slots[i] if slots and i < len(slots) and slots[i] else None) or int(f.get("cpus") or 1)
        need = shm_need(ranks, family, job_shm)
        if "shm_error" in f:
            problems.append(f"{label[i]}: {f['shm_error']}")
            continue
        total, free = int(f.get("shm_total", 0)), int(f.get("shm_free", 0))
        rows.append({"node": i, "ranks": ranks, "need": need, "total": total, "free": free})
        if problem := check_shm(label[i], total, free, need):
            problems.append(problem)
    data = {"nodes": rows}
    if problems:
        more = f" (and {len(problems) - 1} more node(s))" if len(problems) > 1 else ""
        return Check("shm", False, problems[0] + more, data=data)
    need = max(r["need"] for r in rows)
    least = min(rows, key=lambda r: r["free"])
    counts = sorted({r["ranks"] for r in rows})
    return Check("shm", True, f"every node has at least {fmt_bytes(least['free'])} free in /dev/shm; the job needs "
                 f"{fmt_bytes(need)} ({'/'.join(map(str, counts))} rank(s) per node)", data=data)


def _fabric(nodes: list[dict[str, Any]], label: list[str], family: str, transport: str,
            main_address: str | None) -> list[Check]:
    from mnp.fabric.efa import EfaReport
    from mnp.errors import MnpError
    from mnp.fabric.ifaces import Iface, pick_iface
    from mnp.fabric.transport import choose_transport

    n = len(nodes)
    bad = [(i, f["ifaces_error"]) for i, f in enumerate(nodes) if "ifaces_error" in f]
    iface = subnet = None
    if bad:
        iface_check = Check("interfaces", False, f"{label[bad[0][0]]}: {bad[0][1]}")
    else:
        per_node = {i: [Iface.from_dict(x) for x in f.get("ifaces", [])] for i, f in enumerate(nodes)}
        try:
            choice = pick_iface(per_node, prefer_address=main_address)
        except MnpError as e:
            iface_check = Check("interfaces", False, _line(str(e)))
        else:
            iface, subnet = (choice.name if n > 1 else None), choice.subnet
            iface_check = Check("interfaces", True, choice.why,
                                data={"name": choice.name, "subnet": choice.subnet, "names": choice.names})
    reports = []
    for f in nodes:
        d = f.get("efa") or {}
        reports.append(EfaReport.from_dict(d) if d else EfaReport(problem=f.get("efa_error", "no EFA report")))
    try:
        t = choose_transport(family, transport, n, iface=iface, efa_nodes=reports, subnet=subnet,
                             kernel_release=nodes[0].get("kernel"), node_names=[f.get("hostname", "") for f in nodes])
    except MnpError as e:
        return [iface_check, Check("transport", False, _line(str(e)), data={"asked": transport})]
    where = f"{t.inter_node} between nodes, {t.intra_node} within" if n > 1 else f"{t.intra_node} (one node)"
    return [iface_check, Check("transport", True, f"{where}: {t.why}",
                               data={"asked": transport, "inter_node": t.inter_node, "intra_node": t.intra_node,
                                     "provider": t.provider, "env": t.env})]


def _latency(probe: dict[str, Any], factor: float) -> Check:
    matrix = probe.get("latency_us") or []
    values = [v for i, row in enumerate(matrix) for j, v in enumerate(row) if j > i and v is not None]
    if not values:
        return Check("latency", True, "one node: no pairs to measure", warn=True)
    med = statistics.median(values)
    slow = slow_pairs(matrix, factor)
    again = probe.get("remeasured") or []
    note = f" ({len(again)} measured twice)" if again else ""
    data = {"median_us": med, "slow": [list(s) for s in slow], "remeasured": again}
    if slow:
        listed = ", ".join(f"{i}-{j} {v:.1f} us" for i, j, v in sorted(slow, key=lambda s: -s[2])[:4])
        return Check("latency", False, f"{len(slow)} of {len(values)} pair(s) slower than {factor:g}x the median "
                     f"{med:.1f} us{note}: node {listed}" + (", ..." if len(slow) > 4 else ""), warn=True, data=data)
    worst = max(((i, j, v) for i, row in enumerate(matrix) for j, v in enumerate(row) if j > i and v is not None),
                key=lambda s: s[2])
    return Check("latency", True, f"median {med:.1f} us half round trip over {len(values)} pair(s); slowest "
                 f"node {worst[0]}-{worst[1]} {worst[2]:.1f} us{note}", warn=True, data=data)


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


# -- output --------------------------------------------------------------------------------------------------------


def render(report: DoctorReport) -> str:
    """One line per check (OK / FAIL / WARN), then the latency matrix in microseconds."""
    lines = []
    if report.job_id:
        n = len((report.probe or {}).get("nodes", [])) or len(report.nodes)
        lines.append(f"mnp doctor: {n} node(s), probe job {report.job_id}, {report.wall_s:.2f} s")
    width = max(len(c.name) for c in report.checks)
    for c in report.checks:
        mark = "OK" if c.ok else ("WARN" if c.warn else "FAIL")
        lines.append(f"{mark:<5} {c.name:<{width}}  {c.detail}")
    matrix = (report.probe or {}).get("latency_us") or []
    if len(matrix) > 1:
        names = [str(f.get("hostname", "?"))[:12] for f in report.probe["nodes"]]  # type: ignore[index]
        cells = [["-" if v is None else f"{v:.1f}" for v in row] for row in matrix]
        w = max(6, *(len(x) for row in cells for x in row))
        lab = max(len(f"{i} {nm}") for i, nm in enumerate(names))
        lines.append("latency, half round trip (us):")
        lines.append(" " * lab + "".join(f" {i:>{w}}" for i in range(len(matrix))))
        for i, row in enumerate(cells):
            lines.append(f"{f'{i} {names[i]}':<{lab}}" + "".join(f" {x:>{w}}" for x in row))
    failed = [c.name for c in report.checks if not c.ok and not c.warn]
    lines.append("result: OK: a launch should work" if report.ok else
                 f"result: FAIL: a launch would fail ({', '.join(failed)})")
    return "\n".join(lines)


# -- command -------------------------------------------------------------------------------------------------------


@click.command()
@click.option("-n", "--nodes", type=click.IntRange(min=1), envvar="MNP_NODES",
              help="Number of nodes (local nodes: default 2; hosts: default all of them).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (checks, node facts, matrix).")
@click.option("--ranks-per-node", type=click.IntRange(min=1),
              help="The job's ranks per node, for the /dev/shm check (default: slots, else each node's CPUs).")
@click.option("--transport", type=click.Choice(["auto", "tcp", "efa", "shm"]), default="auto", show_default=True,
              help="The job's transport: is it possible on these nodes?")
@click.option("--isolate/--no-isolate", default=None,
              help="Local nodes in their own namespaces (default: when root) or as plain processes.")
@node_source_options
def doctor(nodes: int | None, as_json: bool, ranks_per_node: int | None, transport: str, isolate: bool | None,
           **where: Any) -> None:
    """Check the nodes before a job runs: reachability, clocks, MPI, /dev/shm, interfaces, transport, latency.

    Exit 0 when a launch should work, 1 when it would fail (slow pairs only warn).
    """
    hosts, ssh = nodes_from_options(**where)
    report = run_doctor(DoctorRequest(nodes=nodes, hosts=hosts, ssh=ssh, isolate=isolate,
                                      ranks_per_node=ranks_per_node, transport=transport))
    click.echo(json.dumps(report.to_json()) if as_json else render(report))
    sys.exit(report.interrupted or (0 if report.ok else 1))
