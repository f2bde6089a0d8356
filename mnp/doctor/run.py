"""Running the probe: :func:`run_doctor` launches :mod:`mnp.doctor.probe` with mnp's own launch machinery.

One rank per node, as ``mnp launch`` would start a job there, and a second rank on node 0 (unless the job runs one
rank per node) for the shared-memory path. The probe runs with the job's MPI -- the interpreter given
(``python``, whose MPI is detected as ``mpi: auto`` does, or named with ``mpi``), with mnp importable from this
tree -- and the job's transport settings (``transport``, ``env``). The probe's ``MNP-PROBE`` line is read back from
the job's kept rank-0 log (:func:`~mnp.doctor.probe_data.read_probe`) and handed to
:func:`~mnp.doctor.analyse.analyse`. A host that cannot be reached or set up is a failed ``reachability`` check, a
probe that could not start or failed a failed ``probe`` check; either is then the only check. Usage errors (a bad
transport, ranks per node below 1) raise.

Isolated local nodes get a /dev/shm made for each job, so the probe's is made the size the job's would be and the
``shm`` check shows that the mount took; on SSH hosts (and plain local processes) it is the machine's own.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnp.doctor.analyse import analyse
from mnp.doctor.probe_data import read_probe
from mnp.doctor.report import Check, DoctorReport, one_line

if TYPE_CHECKING:
    from mnp.cluster.base import Cluster
    from mnp.cluster.hosts import HostSpec
    from mnp.cluster.sshopts import SshOptions

__all__ = ["PROBE_SHM", "DoctorRequest", "run_doctor"]

PROBE_SHM = 1 << 20  # what the probe asks of SSH hosts' /dev/shm: next to nothing; the job's need is checked here


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
    python: str | None = None  # the interpreter the probe runs with (its MPI is the job's); default: this one
    mpi: str = "auto"  # the job's MPI family (auto: detected from ``python``)
    env: dict[str, str] | None = None  # the job's environment (transport settings: FI_*, OMPI_MCA_*, ...)
    cluster: Cluster | None = None  # nodes made by the caller (a provider not built from the options)


def run_doctor(req: DoctorRequest) -> DoctorReport:
    """Launch the probe on the nodes and analyse what it found. Usage errors raise; anything else is a check."""
    from mnp.cluster.local import namespaces_available
    from mnp.coordinator import LaunchRequest, launch
    from mnp.errors import ClusterError, HostError, MnpError, UsageError
    from mnp.fabric.shm import shm_need
    from mnp.fabric.transport import TRANSPORTS
    from mnp.spec.model import spec_from_dict

    if req.transport not in TRANSPORTS:
        raise UsageError(f"--transport: '{req.transport}' is not one of " + ", ".join(TRANSPORTS))
    if req.ranks_per_node is not None and req.ranks_per_node < 1:
        raise UsageError(f"--ranks-per-node: must be at least 1, got {req.ranks_per_node}")
    n = req.cluster.num_nodes if req.cluster is not None else req.nodes or (len(req.hosts) if req.hosts else 2)
    python = req.python or (req.ssh.remote_python if req.ssh and req.ssh.remote_python else None) or sys.executable
    # The probe runs over what the job would get where that can work (efa only with EFA everywhere, shm on one
    # node): auto picks it; the asked transport is judged from the nodes' facts.
    fields: dict[str, Any] = {"name": "mnp-doctor", "command": [python, "-m", "mnp.doctor.probe"], "ranks_per_node": 1,
                              "transport": req.transport if req.transport in ("auto", "tcp") else "auto",
                              "nodes": n, "timeout": req.timeout_s, "mpi": req.mpi, "env": _probe_env(req, python),
                              # unbound: the probe measures paths; where ranks of two nodes do share a CPU (an MPI's
                              # binding the job's env turns on) it finds that out itself, from sched_getcpu
                              "bind_to": "none"}
    if req.ranks_per_node != 1 and n == 1:  # a second rank on node 0: the shared-memory path of the job's ranks
        fields["ranks_per_node"] = 2
    elif req.ranks_per_node != 1:
        fields["node_ranges"] = [{"target_nodes": "0:", "ranks_per_node": 1},
                                 {"target_nodes": "0", "ranks_per_node": 2}]
    # Isolated local nodes get a /dev/shm made for each job: the probe's is made the size the job's would be.
    # Elsewhere (hosts, plain local processes) /dev/shm is the machine's own, checked against the job's need here;
    # the probe itself asks for next to nothing, so that launching it never stops at the /dev/shm check.
    isolated = req.hosts is None and req.isolate is not False and namespaces_available()
    family = _family(req.mpi, python)
    fields["shm_size"] = shm_need(max(2, req.ranks_per_node or _local_cpus()), family, None) if isolated else PROBE_SHM
    spec = spec_from_dict(fields)
    t0 = time.monotonic()
    try:  # the probe's output is data, kept in the job's log, not something to show
        result = launch(LaunchRequest(spec=spec, nodes=n, isolate=req.isolate, echo=False, grace_s=2.0,
                                      hosts=req.hosts, ssh=req.ssh, home=req.home,
                                      join_timeout_s=req.join_timeout_s, cluster=req.cluster,
                                      job_id=req.cluster.job_id if req.cluster is not None else None))
    except UsageError:
        raise
    except (HostError, ClusterError) as e:  # a host that cannot be reached or set up: the message names it
        return DoctorReport([Check("reachability", False, one_line(str(e)))], wall_s=time.monotonic() - t0)
    except MnpError as e:
        return DoctorReport([Check("probe", False, one_line(f"the probe could not start: {e}"))],
                            wall_s=time.monotonic() - t0)
    wall = time.monotonic() - t0
    logs = Path(result.dir) / "logs"
    if result.state != "SUCCEEDED":
        why = _stderr_hint(logs)
        stopped = result.exit_code if result.reason.startswith("interrupted") else None
        return DoctorReport([Check("probe", False, one_line(f"the probe job {result.job_id} failed: {result.reason}"
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


def _family(mpi: str, python: str) -> str:
    """The probe's MPI family: as asked, else detected from the interpreter as ``mpi: auto`` does."""
    if mpi != "auto":
        return mpi
    from mnp.launch.detect import detect_mpi

    return detect_mpi([python]).family


def _probe_env(req: DoctorRequest, python: str) -> dict[str, str]:
    """The job's environment, and mnp importable for an interpreter that is not this one (another MPI's venv)."""
    env = dict(req.env or {})
    if python != sys.executable and "PYTHONPATH" not in env:
        here = str(Path(__file__).resolve().parent.parent.parent)
        env["PYTHONPATH"] = here + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    return env


def _local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


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
