"""What ``mnp launch`` and ``mnp run`` do once they have a job: a dry run, or the launch itself -- the job's id
on stderr first, its events rendered, its result reported, the process's exit status the job's."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click

from mnp.cli.jobopts import JobOptions
from mnp.cli.render import RankFiles, Renderer, check_pattern

if TYPE_CHECKING:
    from mnp.cli.layout import Job
    from mnp.cluster.hosts import HostSpec
    from mnp.cluster.sshopts import SshOptions

__all__ = ["check_options", "report", "start"]


def check_options(opts: JobOptions) -> None:
    """What can be checked of the options alone (before a job file is read)."""
    if opts.output is not None:
        check_pattern(opts.output, "--output")
    if opts.error is not None:
        check_pattern(opts.error, "--error")


def _stdin_fd() -> int | None:
    """mnp's standard input, when it has one to hand on."""
    try:
        return sys.stdin.fileno() if sys.stdin is not None and not sys.stdin.closed else None
    except (OSError, ValueError):  # replaced by something without a descriptor (an embedding program)
        return None


def _host_names(job_id: str) -> Callable[[int], str]:
    """node -> its host name, read from the job's record once the nodes are up (``%h``)."""
    names: dict[int, str] = {}

    def host(node: int) -> str:
        if node not in names:
            from mnp.records import Records

            records = Records()
            try:
                names.update({n["index"]: n["hostname"] for n in records.get(job_id).nodes})
            finally:
                records.close()
        return names.get(node, f"node{node}")

    return host


def start(job: Job, opts: JobOptions, hosts: list[HostSpec] | None, ssh: SshOptions | None) -> NoReturn:
    """Run ``job`` (or, with ``--dry-run``, print its plan) and exit with its exit status."""
    if ssh is not None and opts.tree_width is not None:  # SSH hosts beyond the width are dialled by relays
        import dataclasses

        ssh = dataclasses.replace(ssh, tree_width=opts.tree_width)
    for note in job.notes:
        click.echo(f"mnp: {note}", err=True)
    if opts.dry_run:
        from mnp.cli import dryrun

        plan = dryrun.plan(job, hosts, opts.isolate, opts.tree_width, ssh.via if ssh is not None else None)
        click.echo(json.dumps(plan) if opts.as_json else dryrun.render(plan))
        sys.exit(0)
    from mnp import config
    from mnp.records import new_job_id

    for name in ("heartbeat", "dead_after", "join_timeout"):  # a bad $MNP_<NAME> is the only line printed
        config.setting(name, None)
    grace = config.setting("grace", opts.grace)
    config.setting("notify_timeout", None)
    from mnp.node.telemetry import telemetry_interval

    telemetry_interval()  # so is a bad $MNP_TELEMETRY_INTERVAL
    job_id = new_job_id()
    if job.spec.array is not None:
        _start_array(job, opts, hosts, ssh, grace, job_id)
    files = RankFiles(opts.output, opts.error, job_id, _host_names(job_id)) if opts.output or opts.error else None
    ranks = f"{job.ranks} rank(s)" if job.ranks is not None else "ranks per node from each node's CPUs or slots"
    render = Renderer(quiet_stdout=opts.as_json, label=opts.label if opts.label is not None else job.ranks != 1,
                      timestamp=opts.timestamp, files=files, started=f"{job.nodes} node(s), {ranks}")
    # SSH hosts start their agents while the coordinator loads (not for a job that may wait in PENDING for hours)
    waits = bool(opts.depends_on or job.spec.depends_on)
    early = None if waits else _begin_hosts(job, hosts, ssh, job_id)
    control = None
    if early is not None and ssh is not None and ssh.via == "pool":  # a message per node starts its agent:
        from mnp.coordinator.bringup import prestart  # sent now, the agents come up while the coordinator loads

        control = prestart(early, job_id, len(early.hosts), opts.tree_width)
    try:
        from mnp.coordinator import LaunchRequest, launch

        result = launch(LaunchRequest(spec=job.spec, spec_path=job.source, nodes=job.nodes, isolate=opts.isolate,
                                      events=render, grace_s=grace, hosts=hosts, ssh=ssh, iface=opts.iface,
                                      remount_shm=opts.remount_shm, explain=opts.explain, job_id=job_id, cluster=early,
                                      stdin=job.stdin, stdin_fd=_stdin_fd() if job.stdin != "none" else None,
                                      depends_on=list(opts.depends_on), notify=opts.notify,
                                      tree_width=opts.tree_width, control=control))
    except BaseException:
        if control is not None:  # closed by the job's teardown, unless it failed before: its agents end with it
            control.close()
        if early is not None:  # the job's own teardown ran unless it failed before its nodes: end them here too
            with contextlib.suppress(Exception):
                early.teardown()
        raise
    finally:
        render.close()
    report(result, opts.as_json)


def _start_array(job: Job, opts: JobOptions, hosts: list[HostSpec] | None, ssh: SshOptions | None, grace: float,
                 job_id: str) -> NoReturn:
    """``--array``: the children run side by side, each line tagged with its index; a summary at the end."""
    from mnp.coordinator import LaunchRequest
    from mnp.coordinator.array import launch_array

    assert job.spec.array is not None
    ranks = f"{job.ranks} rank(s)" if job.ranks is not None else "ranks per node from each node's CPUs or slots"
    most = job.spec.array.max_concurrency

    def child_events(child_id: str) -> Renderer:
        files = RankFiles(opts.output, opts.error, child_id, _host_names(child_id)) \
            if opts.output or opts.error else None
        return Renderer(quiet_stdout=opts.as_json, label=opts.label if opts.label is not None else job.ranks != 1,
                        timestamp=opts.timestamp, files=files, tag=f"[{child_id.rpartition(':')[2]}] ",
                        started=f"{job.nodes} node(s), {ranks}")

    render = Renderer(quiet_stdout=opts.as_json, started=f"array of {job.spec.array.size} children, "
                                                         f"{most or 'all'} at once, {job.nodes} node(s) each")
    result = launch_array(LaunchRequest(spec=job.spec, spec_path=job.source, nodes=job.nodes, isolate=opts.isolate,
                                        events=render, grace_s=grace, hosts=hosts, ssh=ssh, iface=opts.iface,
                                        remount_shm=opts.remount_shm, explain=opts.explain, job_id=job_id,
                                        stdin="none", depends_on=list(opts.depends_on), notify=opts.notify,
                                        tree_width=opts.tree_width),
                          job.spec.array.size, most, child_events)
    ok, bad = result.indexes("SUCCEEDED"), [c for c in result.children if c["state"] != "SUCCEEDED"]
    line = f"mnp: array {result.job_id} {result.state}: {len(ok)} of {len(result.children)} succeeded"
    if bad:
        line += "; " + ", ".join(f"{c['index']} {c['state']}" + (f" (exit {c['exit_code']})"
                                                                    if c["exit_code"] is not None else "")
                                 for c in bad[:20]) + (f", {len(bad) - 20} more" if len(bad) > 20 else "")
    if opts.as_json:
        click.echo(json.dumps(result.to_json()))
    click.echo(line, err=True)
    sys.exit(exit_status(result.exit_code, result.state == "SUCCEEDED"))


def _begin_hosts(job: Job, hosts: list[HostSpec] | None, ssh: SshOptions | None, job_id: str) -> Any:
    """The job's SSH hosts, already being dialled and preflighted (:meth:`SshCluster.begin`; a pool's agents,
    asked who they are), or None (other nodes, or a node count the coordinator will refuse). The job's teardown
    ends them (and, should the job fail before it has nodes, the caller's)."""
    if hosts is None or ssh is None or ssh.via not in ("ssh", "pool") or \
            (job.nodes is not None and not 0 < job.nodes <= len(hosts)):
        return None
    cluster: Any
    if ssh.via == "pool":  # the pool agents are asked who they are (CURVE handshakes included) meanwhile
        from mnp.cluster.pool import PoolCluster

        cluster = PoolCluster(job_id, hosts[: job.nodes or len(hosts)])
    else:
        from mnp.cluster.ssh import SshCluster

        cluster = SshCluster(job_id, hosts[: job.nodes or len(hosts)], ssh)
    cluster.begin()
    return cluster


def exit_status(code: int | None, ok: bool) -> int:
    """What mnp exits with: 0 for a job that succeeded; for one that did not, its exit code when the shell can
    carry it (1-255), else the low byte or 1 (``MPI_Abort(comm, 256)`` must not read as success)."""
    if ok:
        return 0
    c = 1 if code is None else code
    return c if 1 <= c <= 255 else (c & 0xFF) or 1


def report(result: Any, as_json: bool) -> NoReturn:
    """The job's result: one JSON object (``--json``), a line on stderr unless it succeeded, its exit status."""
    if as_json:
        click.echo(json.dumps(result.to_json()))
    if result.state != "SUCCEEDED":
        click.echo(f"mnp: job {result.job_id} {result.state}: {result.reason} (exit {result.exit_code})", err=True)
    sys.exit(exit_status(result.exit_code, result.state == "SUCCEEDED"))
