"""The commands about jobs that ran or run: ``list``, ``status``, ``logs`` (``-f`` follows a running job) and
``cancel`` (stops a running job from another shell). Loaded by the ``mnp`` group only when asked for.

``cancel`` signals the job's coordinator -- the ``mnp launch``/``run`` process named in the record -- with SIGTERM,
and only when that process is alive, on this host, an mnp process, and older than the job; the coordinator turns
it into a CANCELLED record (exit 143) after stopping every rank. ``cancel`` then waits for the record to be final.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mnp.cli.types import Seconds
from mnp.errors import MnpError, UsageError

if TYPE_CHECKING:
    from mnp.records import JobRecord, Records

__all__ = ["cancel", "list_jobs", "logs", "status"]

_LOG = re.compile(r"^node(\d+)\.(?:rank(\d+)|launcher|([A-Za-z][A-Za-z0-9_-]*))\.(out|err)$")  # or a process
_PROCESS = -2  # the "rank" of a named process's log


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of jobs (keys: see README, JSON output).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Jobs shown at most.")
@click.option("--stuck", is_flag=True, help="Only jobs that got a stuck-in-transit alert (array children too).")
def list_jobs(as_json: bool, limit: int, stuck: bool) -> None:
    """Recent jobs, newest first (an array's children: mnp status JOB).

    \b
    Example:
      mnp list --limit 5
      mnp list --stuck
    """
    from mnp.records import Records

    records = Records()
    records.reap_orphans()
    jobs = records.list(limit, stuck=stuck)
    if as_json:
        click.echo(json.dumps([_summary(j) for j in jobs]))
        return
    click.echo(f"{'JOB':<12}{'NAME':<20}{'STATE':<11}{'NODES':>5}  {'EXIT':>4}  {'WALL':>8}  CREATED")
    for j in jobs:
        wall = f"{j.wall_s:.2f}s" if j.wall_s is not None else "-"
        code = "-" if j.exit_code is None else str(j.exit_code)
        array = j.info.get("array")
        extra = f"  array of {array['size']}" if array else ""
        if stuck and j.alerts:
            extra += f"  stuck: {j.alerts[-1]['state']} {j.alerts[-1]['waited_s']:.0f}s"
        click.echo(f"{j.id:<12}{j.name[:19]:<20}{j.state:<11}{j.num_nodes:>5}  {code:>4}  {wall:>8}  "
                   f"{datetime.fromtimestamp(j.created):%Y-%m-%d %H:%M:%S}{extra}")


def _summary(j: JobRecord) -> dict[str, Any]:
    return {"job_id": j.id, "name": j.name, "state": j.state, "num_nodes": j.num_nodes, "exit_code": j.exit_code,
            "reason": j.reason, "wall_s": j.wall_s, "created": j.created, "stuck": bool(j.alerts),
            "alerts": j.alerts, "array_size": (j.info.get("array") or {}).get("size"), "parent": j.parent}


def _show_children(kids: list[JobRecord]) -> None:
    from collections import Counter

    from mnp.records import state_times

    counts = Counter(k.state for k in kids)
    click.echo(f"children  {len(kids)}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    for k in kids:
        times = state_times(k.transitions, None if not k.final else k.updated)
        ran = times.get("RUNNING")
        took = f"ran {ran:.2f}s" if ran is not None else "-"
        code = "-" if k.exit_code is None else str(k.exit_code)
        click.echo(f"  {k.id:<16}{k.state:<11}exit {code:>3}  {took:<12}{k.reason or ''}"[:160])


@click.command()
@click.argument("job")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as one JSON object.")
def status(job: str, as_json: bool) -> None:
    """One job's state, transitions, nodes and exit.

    JOB is a job id, a unique prefix of one, or a job name (its newest job).

    \b
    Example:
      mnp status 3f9c01a2b4
      mnp status --json hello
    """
    from mnp.records import Records

    records = Records()
    records.reap_orphans()
    j = records.get(job)
    kids = records.children(j.id)
    if as_json:
        d = j.to_json()
        if kids:
            d["children"] = [k.to_json() for k in kids]
        click.echo(json.dumps(d))
        return
    click.echo(f"job       {j.id} ({j.name})\nstate     {j.state}\ncommand   {j.command}")
    if j.parent is not None:
        click.echo(f"array     child {j.array_index} of {j.parent}")
    click.echo(f"exit      {'-' if j.exit_code is None else j.exit_code}   reason: {j.reason or '-'}")
    if j.wall_s is not None:
        click.echo(f"wall      {j.wall_s:.3f}s")
    click.echo(f"dir       {j.dir}")
    t0 = j.transitions[0][1] if j.transitions else j.created
    for (state, ts, why), nxt in zip(j.transitions, [*j.transitions[1:], None]):
        stay = f"{(nxt[1] if nxt else time.time()) - ts:9.3f}s" if nxt or not j.final else " " * 10
        click.echo(f"  {datetime.fromtimestamp(ts):%H:%M:%S.%f}"[:-3] + f"  +{ts - t0:7.3f}s  {state:<10} {stay}"
                   + (f"  {why}" if why and state not in ("FAILED", "CANCELLED", "SUCCEEDED") else ""))
    from mnp.records import state_times

    times = state_times(j.transitions, None if not j.final else j.updated)
    if times:
        click.echo("in state  " + ", ".join(f"{s} {t:.3f}s" for s, t in times.items()))
    for alert in j.alerts:
        click.echo(f"stuck     {alert['line']}")
    if j.info.get("depends_on"):
        click.echo("depends   " + ", ".join(j.info["depends_on"]))
    if kids:
        _show_children(kids)
    for n in j.nodes:
        click.echo(f"  node {n['index']}: {n['hostname']} {n['address']} ranks {n.get('ranks', '-')}")
    for node, procs in sorted(j.info.get("processes", {}).items(), key=lambda kv: int(kv[0])):
        for name, r in procs.items():
            end = "-" if "exit_code" not in r else f"exit {r['exit_code']}" + (f" ({r['signal']})" if r.get("signal")
                                                                                else "")
            more = f"  {r['reason']}" if r.get("reason") else ""
            click.echo(f"  process node {node} {name}: {'essential' if r['essential'] else 'non-essential'}, "
                       f"{end}{more}")
    mpi = j.info.get("mpi")
    if mpi:
        click.echo(f"mpi       {mpi['family']} via {mpi['launcher']} ({mpi['why']})")
    tr = j.info.get("transport")
    if tr:
        click.echo(f"transport {tr['inter_node']} between nodes, {tr['intra_node']} within ({tr['why']})")
    ifc = j.info.get("iface")
    if ifc:
        click.echo(f"iface     {ifc['name'] or 'any'} ({ifc['why']})")
    bound = j.info.get("binding")
    if isinstance(bound, dict):  # older records kept a line of text
        ranks = bound.get("ranks") or {}
        cpus = " ".join(f"{r}->{c}" for r, c in list(ranks.items())[:16] if c is not None)
        more = f" ... ({len(ranks) - 16} more)" if len(ranks) > 16 else ""
        click.echo(f"binding   {bound.get('why', '')}" + (f"; rank {cpus}{more}" if cpus else ""))
    from mnp.fabric.shm import fmt_bytes

    for node, sh in sorted(j.info.get("shm", {}).items(), key=lambda kv: int(kv[0])):
        click.echo(f"/dev/shm  node {node}: {fmt_bytes(sh['free'])} free of {fmt_bytes(sh['total'])}, "
                   f"need {fmt_bytes(sh['need'])}{'  ' + sh['problem'] if sh.get('problem') else ''}")
    if tr and tr.get("env"):
        click.echo("env       " + " ".join(f"{k}={v}" for k, v in sorted(tr["env"].items())))
    ctl = j.info.get("control")
    if isinstance(ctl, dict):
        shape = f"tree of width {ctl.get('width')}, {ctl.get('depth')} levels" if ctl.get("width") else "star"
        click.echo(f"control   {shape}; the coordinator read {ctl.get('frames_in')} and wrote {ctl.get('frames_out')} "
                   f"frames, {ctl.get('barriers', 0)} PMI barrier(s), {ctl.get('coordinator_cpu_s')} s of CPU")
    from mnp.coordinator.telemetry import status_lines

    for line in status_lines(j.info.get("telemetry"), j.info.get("shm")):
        click.echo(line)


def _attempts(logs_dir: Path) -> list[int]:
    return sorted(int(p.name[7:]) for p in logs_dir.glob("attempt*") if p.name[7:].isdigit())


def _log_files(where: Path, node: int | None, rank: int | None,
               errs: bool | None) -> Iterator[tuple[int, str, int, Path]]:
    """(rank, stream, node, path) of the kept logs in ``where`` that the filters let through (rank -1: the
    launcher's own output)."""
    if not where.is_dir():
        return
    for p in where.iterdir():
        m = _LOG.match(p.name)
        if not m:
            continue
        nn, rr, st = int(m.group(1)), _rank_of(m), m.group(4)
        if (node is None or nn == node) and (rank is None or rr == rank) and (errs is None or (st == "err") == errs):
            yield rr, st, nn, p


def _rank_of(m: re.Match[str]) -> int:
    return int(m.group(2)) if m.group(2) else _PROCESS if m.group(3) else -1


def _prefix(node: int, rank: int, path: Path | None = None) -> str:
    if rank == _PROCESS and path is not None:  # a named process: its name is in its log's name
        return f"[node {node} {path.name.split('.')[1]}] "
    return f"[node {node} rank {rank}] " if rank >= 0 else f"[node {node} launcher] "


@click.command()
@click.argument("job")
@click.option("-f", "--follow", is_flag=True, help="Keep printing output as it arrives until the job ends.")
@click.option("--node", type=int, help="Only this node's ranks.")
@click.option("--rank", type=int, help="Only this rank.")
@click.option("--stderr/--stdout", "errs", default=None, help="Only one stream (default: both).")
@click.option("--attempt", type=click.IntRange(min=1), help="Output of this attempt (default: the last one).")
def logs(job: str, follow: bool, node: int | None, rank: int | None, errs: bool | None,
         attempt: int | None) -> None:
    """Print a job's kept rank output, prefixed like live output; -f follows a running job.

    \b
    Example:
      mnp logs 3f9c01a2b4 --rank 3
      mnp logs -f hello
    """
    from mnp.records import Records

    records = Records()
    j = records.get(job)
    base = Path(j.dir, "logs")
    tries = _attempts(base)
    where = base
    if tries:  # a job with retries keeps each attempt's output apart
        pick = attempt or tries[-1]
        if pick not in tries:
            raise UsageError(f"--attempt: job {j.id} has attempts {', '.join(map(str, tries))}")
        where = base / f"attempt{pick}"
    elif attempt not in (None, 1):
        raise UsageError(f"--attempt: job {j.id} ran once")
    if follow:
        _follow(records, j.id, base, attempt or (tries[-1] if tries else 0), attempt is not None,
                (node, rank, errs))
        return
    files = sorted(_log_files(where, node, rank, errs))
    if not files and (node is not None or rank is not None):
        what = " ".join(f for f in (f"node {node}" if node is not None else "",
                                    f"rank {rank}" if rank is not None else "") if f)
        raise UsageError(f"job {j.id}: no output kept for {what}")
    for rr, st, nn, p in files:
        out = sys.stdout if st == "out" else sys.stderr
        for line in p.read_text(errors="replace").splitlines():
            out.write(f"{_prefix(nn, rr, p)}{line}\n")


def _follow(records: Records, job_id: str, base: Path, first: int, only: bool,
            filters: tuple[int | None, int | None, bool | None], poll: float = 0.2) -> None:
    """Print what the logs gain, attempt ``first`` on (only it when ``only``), until the job's record is final.
    A line is printed once complete; what a rank left without a final newline is printed at the end."""
    offsets: dict[Path, int] = {}
    partial: dict[Path, bytes] = {}
    last_reap = 0.0
    while True:
        if time.monotonic() - last_reap > 1:  # a coordinator that died: its record becomes final
            records.reap_orphans()
            last_reap = time.monotonic()
        final = records.get(job_id).final  # read before the files: all output is in them once it is final
        dirs = [base, *(base / f"attempt{a}" for a in _attempts(base) if (a == first if only else a >= first))]
        for where in dirs:
            for rr, st, nn, p in sorted(_log_files(where, *filters)):
                with open(p, "rb") as f:
                    f.seek(offsets.get(p, 0))
                    data = f.read()
                if not data:
                    continue
                offsets[p] = offsets.get(p, 0) + len(data)
                *lines, partial[p] = (partial.get(p, b"") + data).split(b"\n")
                out = sys.stdout if st == "out" else sys.stderr
                out.write("".join(f"{_prefix(nn, rr, p)}{ln.decode(errors='replace')}\n" for ln in lines))
                out.flush()
        if final:
            break
        time.sleep(poll)
    for p, rest in partial.items():
        if rest:
            m = _LOG.match(p.name)
            assert m is not None
            out = sys.stdout if m.group(4) == "out" else sys.stderr
            out.write(f"{_prefix(int(m.group(1)), _rank_of(m), p)}{rest.decode(errors='replace')}\n")


def _is_mnp(pid: int, created: float) -> bool:
    """Whether ``pid`` is an mnp process that started no later than the job (not a reused pid)."""
    import psutil

    try:
        p = psutil.Process(pid)
        words = p.cmdline()
        started = p.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    named = any(Path(w).name == "mnp" for w in words[:2]) or \
        any(a == "-m" and b.split(".")[0] == "mnp" for a, b in zip(words, words[1:]))
    return named and started <= created + 1


@click.command()
@click.argument("job")
@click.option("--wait", type=Seconds(0, 3600), default=60, show_default=True, metavar="SECONDS",
              help="Seconds to wait for the job to end after the signal (0: do not wait).")
def cancel(job: str, wait: float) -> None:
    """Stop a running job from another shell: SIGTERM to its mnp process, then wait for its record to end.

    The job's ranks are stopped as by Ctrl-C (SIGTERM, then SIGKILL after its grace) and its record becomes
    CANCELLED. Exit 0 once the job has ended, 1 when it is not running or did not end in time, 2 for an
    unknown job.

    \b
    Example:
      mnp cancel 3f9c01a2b4
    """
    from mnp.records import Records

    records = Records()
    records.reap_orphans()
    j = records.get(job)
    if j.final:
        raise MnpError(f"job {j.id} is not running: {j.state} (exit {j.exit_code})")
    if j.parent is not None and j.owner_pid is not None and j.owner_pid == records.get(j.parent).owner_pid:
        # an array child not started yet: its record still names the array's process, which must not be signalled
        # (that would stop the whole array); it is marked CANCELLED, and the array never starts it
        if records.cancel_unstarted(j.id, j.owner_pid, "cancelled before it started (mnp cancel)"):
            click.echo(f"job {j.id} CANCELLED before it started")
            return
        j = records.get(j.id)  # taken by its own process meanwhile: signal that one
        if j.final:
            raise MnpError(f"job {j.id} is not running: {j.state} (exit {j.exit_code})")
    if j.owner_pid is None or j.owner_host is None:
        raise MnpError(f"job {j.id}: its record names no coordinator process to signal")
    if j.owner_host != socket.gethostname():
        raise MnpError(f"job {j.id} runs on {j.owner_host} (pid {j.owner_pid}): cancel it there")
    if not _is_mnp(j.owner_pid, j.created):
        raise MnpError(f"job {j.id}: pid {j.owner_pid} is not its mnp process any more; not signalling it")
    try:
        os.kill(j.owner_pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # it ended meanwhile: its record says how
    except PermissionError:
        raise MnpError(f"job {j.id}: not allowed to signal its process (pid {j.owner_pid}, another user's)") \
            from None
    if not wait:
        click.echo(f"job {j.id}: SIGTERM sent to its mnp process (pid {j.owner_pid})")
        return
    deadline = time.monotonic() + wait
    while not j.final and time.monotonic() < deadline:
        time.sleep(0.1)
        records.reap_orphans()
        j = records.get(j.id)
    if not j.final:
        raise MnpError(f"job {j.id} is still {j.state} {wait:g}s after SIGTERM to pid {j.owner_pid}")
    click.echo(f"job {j.id} {j.state}: {j.reason or '-'} (exit {j.exit_code})")
