"""The ``mnp`` command: parse, call one library function, print. The one error boundary of mnp.

Exit statuses: the job's own exit code for ``launch``; 2 for bad input (usage, job file); 1 for other mnp errors;
130 after Ctrl-C. Tracebacks only with ``--debug``.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from mnp import __version__
from mnp.cli.options import node_source_options, nodes_from_options
from mnp.cli.types import Seconds
from mnp.config import DEFAULTS
from mnp.errors import MnpError

__all__ = ["main", "cli"]


class _Group(click.Group):
    """The error boundary: MnpError and Click's own usage errors (unknown option, bad value, missing argument)
    become one line, ``mnp: error: ...``, and their exit status (2 for usage and spec errors). Commands in
    ``lazy`` are imported only when asked for, so every other command starts without them."""

    lazy = {"doctor": ("mnp.cli.doctor", "doctor")}

    @staticmethod
    def one_line(text: str) -> str:
        """A message on one line: newlines and other unprintable characters escaped."""
        text = text.strip()
        return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)

    @classmethod
    def _fail(cls, e: click.ClickException) -> None:
        click.echo(f"mnp: error: {cls.one_line(e.format_message())}", err=True)
        raise click.exceptions.Exit(e.exit_code)

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.ClickException as e:  # mnp's own options
            self._fail(e)
            raise

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            import importlib

            module, attr = self.lazy[name]
            return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.ClickException as e:  # a command's options and arguments
            self._fail(e)
        except MnpError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"mnp: error: {self.one_line(str(e))}", err=True)
            ctx.exit(e.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mnp")
@click.option("--debug", is_flag=True, envvar="MNP_DEBUG", help="Show tracebacks.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """mnp: launch MPI jobs across nodes (local isolated nodes by default)."""
    ctx.obj = {"debug": debug}


@cli.command()
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option("-n", "--nodes", type=click.IntRange(1, 1000), envvar="MNP_NODES",  # mnp.spec.jobspec.MAX_NODES
              help="Number of nodes (overrides the job's 'nodes').")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end (rank output goes to stderr).")
@click.option("--isolate/--no-isolate", default=None,
              help="Local nodes in their own namespaces (default: when root) or as plain processes.")
@click.option("--grace", type=Seconds(0, 86400),
              help=f"Seconds between SIGTERM and SIGKILL when stopping ranks, at most a day (default: $MNP_GRACE, "
                   f"else {DEFAULTS['grace']:g}).")
@node_source_options
@click.option("--iface", envvar="MNP_IFACE", help="Interface MPI uses between nodes (default: probed on every node).")
@click.option("--remount-shm", is_flag=True, envvar="MNP_REMOUNT_SHM",
              help="As root, grow a node's /dev/shm that is smaller than the job needs (instead of stopping).")
@click.option("--explain", is_flag=True, help="Print the fabric decisions (transport, interface, /dev/shm) and why.")
def launch(job_file: str, nodes: int | None, as_json: bool, isolate: bool | None, grace: float | None,
           iface: str | None, remount_shm: bool, explain: bool, **where: Any) -> None:
    """Run JOB_FILE's ranks on its nodes, stream their output, exit with the job's status.

    Nodes come from --hostfile or --hosts (SSH), else from the Slurm allocation mnp runs in, else they are
    isolated local nodes made on this machine (--nodes of them).
    """
    from mnp.cli.render import Renderer
    from mnp.coordinator import LaunchRequest
    from mnp.coordinator import launch as run
    from mnp.spec.model import load_spec

    spec = load_spec(job_file)
    hosts, ssh = nodes_from_options(**where)
    result = run(LaunchRequest(spec=spec, spec_path=job_file, nodes=nodes, isolate=isolate,
                               events=Renderer(quiet_stdout=as_json), grace_s=grace, hosts=hosts, ssh=ssh,
                               iface=iface, remount_shm=remount_shm, explain=explain))
    _report(result, as_json)


@cli.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
def list_jobs(as_json: bool, limit: int) -> None:
    """Recent jobs, newest first."""
    from mnp.records import Records

    records = Records()
    records.reap_orphans()
    jobs = records.list(limit)
    if as_json:
        click.echo(json.dumps([_summary(j) for j in jobs]))
        return
    click.echo(f"{'JOB':<12}{'NAME':<20}{'STATE':<11}{'NODES':>5}  {'EXIT':>4}  {'WALL':>8}  CREATED")
    for j in jobs:
        wall = f"{j.wall_s:.2f}s" if j.wall_s is not None else "-"
        code = "-" if j.exit_code is None else str(j.exit_code)
        click.echo(f"{j.id:<12}{j.name[:19]:<20}{j.state:<11}{j.num_nodes:>5}  {code:>4}  {wall:>8}  "
                   f"{datetime.fromtimestamp(j.created):%Y-%m-%d %H:%M:%S}")


def _summary(j: Any) -> dict[str, Any]:
    return {"job_id": j.id, "name": j.name, "state": j.state, "num_nodes": j.num_nodes, "exit_code": j.exit_code,
            "reason": j.reason, "wall_s": j.wall_s, "created": j.created}


@cli.command()
@click.argument("job")
@click.option("--json", "as_json", is_flag=True)
def status(job: str, as_json: bool) -> None:
    """One job's state, transitions, nodes and exit."""
    from mnp.records import Records

    records = Records()
    records.reap_orphans()
    j = records.get(job)
    if as_json:
        click.echo(json.dumps(j.to_json()))
        return
    click.echo(f"job       {j.id} ({j.name})\nstate     {j.state}\ncommand   {j.command}")
    click.echo(f"exit      {'-' if j.exit_code is None else j.exit_code}   reason: {j.reason or '-'}")
    if j.wall_s is not None:
        click.echo(f"wall      {j.wall_s:.3f}s")
    click.echo(f"dir       {j.dir}")
    t0 = j.transitions[0][1] if j.transitions else j.created
    for state, ts, _ in j.transitions:
        click.echo(f"  {datetime.fromtimestamp(ts):%H:%M:%S.%f}"[:-3] + f"  +{ts - t0:7.3f}s  {state}")
    for n in j.nodes:
        click.echo(f"  node {n['index']}: {n['hostname']} {n['address']} ranks {n.get('ranks', '-')}")
    mpi = j.info.get("mpi")
    if mpi:
        click.echo(f"mpi       {mpi['family']} via {mpi['launcher']} ({mpi['why']})")
    tr = j.info.get("transport")
    if tr:
        click.echo(f"transport {tr['inter_node']} between nodes, {tr['intra_node']} within ({tr['why']})")
    ifc = j.info.get("iface")
    if ifc:
        click.echo(f"iface     {ifc['name'] or 'any'} ({ifc['why']})")
    from mnp.fabric.shm import fmt_bytes

    for node, sh in sorted(j.info.get("shm", {}).items(), key=lambda kv: int(kv[0])):
        click.echo(f"/dev/shm  node {node}: {fmt_bytes(sh['free'])} free of {fmt_bytes(sh['total'])}, "
                   f"need {fmt_bytes(sh['need'])}{'  ' + sh['problem'] if sh.get('problem') else ''}")
    if tr and tr.get("env"):
        click.echo("env       " + " ".join(f"{k}={v}" for k, v in sorted(tr["env"].items())))


@cli.command()
@click.argument("job")
@click.option("--node", type=int, help="Only this node's ranks.")
@click.option("--rank", type=int, help="Only this rank.")
@click.option("--stderr/--stdout", "errs", default=None, help="Only one stream (default: both).")
@click.option("--attempt", type=click.IntRange(min=1), help="Output of this attempt (default: the last one).")
def logs(job: str, node: int | None, rank: int | None, errs: bool | None, attempt: int | None) -> None:
    """Print a job's kept rank output, prefixed like live output."""
    import re

    from mnp.errors import UsageError
    from mnp.records import Records

    j = Records().get(job)
    pat = re.compile(r"^node(\d+)\.rank(\d+)\.(out|err)$")
    files = []
    where = Path(j.dir, "logs")
    tries = sorted(int(p.name[7:]) for p in where.glob("attempt*") if p.name[7:].isdigit())
    if tries:  # a job with retries keeps each attempt's output apart
        pick = attempt or tries[-1]
        if pick not in tries:
            raise UsageError(f"--attempt: job {j.id} has attempts {', '.join(map(str, tries))}")
        where = where / f"attempt{pick}"
    elif attempt not in (None, 1):
        raise UsageError(f"--attempt: job {j.id} ran once")
    for p in where.iterdir():
        m = pat.match(p.name)
        if not m:
            continue
        nn, rr, st = int(m.group(1)), int(m.group(2)), m.group(3)
        if (node is None or nn == node) and (rank is None or rr == rank) and \
                (errs is None or (st == "err") == errs):
            files.append((rr, st, nn, p))
    if not files and (node is not None or rank is not None):
        what = " ".join(f for f in (f"node {node}" if node is not None else "",
                                    f"rank {rank}" if rank is not None else "") if f)
        raise UsageError(f"job {j.id}: no output kept for {what}")
    for rr, st, nn, p in sorted(files):
        out = sys.stdout if st == "out" else sys.stderr
        for line in p.read_text(errors="replace").splitlines():
            out.write(f"[node {nn} rank {rr}] {line}\n")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--port", type=click.IntRange(1, 65535), default=8740, show_default=True, envvar="MNP_PORT",
              help="The main node's control port.")
@click.option("--join-timeout", type=Seconds(1), default=600, show_default=True,
              envvar="MNP_JOIN_TIMEOUT", help="Seconds the main node waits for children (and children for it).")
@click.option("--dead-after", type=Seconds(1), default=15, show_default=True, envvar="MNP_DEAD_AFTER",
              help="Seconds of silence after which a node, or the main node, counts as lost.")
@click.option("--json", "as_json", is_flag=True, help="Main node: print one JSON object at the end.")
@click.option("--grace", type=Seconds(0, 86400), default=5.0, show_default=True, envvar="MNP_GRACE",
              help="Seconds between SIGTERM and SIGKILL when stopping ranks (at most a day).")
def node(args: tuple[str, ...], port: int, join_timeout: float, dead_after: float, as_json: bool,
         grace: float) -> None:
    """Entry point of an AWS Batch multi-node container: `mnp node JOB_FILE` or `mnp node [--] COMMAND...`.

    Either every node gets the same JOB_FILE (an mnp job or a Batch job definition; also MNP_JOB_FILE), or each
    node gets its own rank COMMAND -- what a Batch job definition's container.command hands the entry point, so
    node ranges run unchanged. The main node (AWS_BATCH_JOB_NODE_INDEX == AWS_BATCH_JOB_MAIN_NODE_INDEX) runs the
    job and waits for the children to dial in; children run the node agent. Every node needs MNP_JOB_SECRET (the
    same value) from the job definition. The main container exits with the job's exit code.
    """
    from pathlib import Path

    from mnp.cluster.awsbatch import SECRET_FD_VAR, BatchMainCluster, batch_node, reexec_without_secret, run_child
    from mnp.errors import UsageError

    reexec_without_secret(sys.argv[1:])  # the secret must not stay in this process's /proc/PID/environ
    me = batch_node(os.environ)
    os.environ.pop(SECRET_FD_VAR, None)  # read once: nothing this process starts may see it
    words = list(args[1:] if args[:1] == ("--",) else args)
    job_file = os.environ.get("MNP_JOB_FILE")
    command: list[str] | None = None
    if len(words) == 1 and words[0].endswith((".yaml", ".yml", ".json")) and Path(words[0]).is_file():
        job_file = words[0]
    elif words:
        command = words
    if not me.is_main:
        sys.exit(run_child(me, port, join_timeout, dead_after, command=command))
    if not job_file and not command:
        raise UsageError("JOB_FILE: the main node needs a job file or a command (mnp node JOB_FILE | -- COMMAND)")
    from mnp.cli.render import Renderer
    from mnp.coordinator import LaunchRequest
    from mnp.coordinator import launch as run
    from mnp.spec.model import load_spec, spec_from_dict

    if command:  # each node runs the command it was given; this one is the main node's
        spec = spec_from_dict({"name": "batch", "command": command, "nodes": me.num_nodes, "main_node": me.main})
    else:
        spec = load_spec(job_file).with_main_node(me.main)  # type: ignore[arg-type]
    click.echo(f"mnp node {me.index}: main node of job {me.job_id} (attempt {me.attempt}); waiting for "
               f"{me.num_nodes - 1} child node(s) on port {port}", err=True)
    result = run(LaunchRequest(spec=spec, spec_path=None if command else job_file, nodes=me.num_nodes,
                               events=Renderer(quiet_stdout=as_json), grace_s=grace, dead_s=dead_after,
                               join_timeout_s=join_timeout,
                               cluster=BatchMainCluster(me.job_id, me, port), job_id=me.job_id,
                               attempt=me.attempt))
    _report(result, as_json)


def _report(result: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.to_json()))
    if result.state != "SUCCEEDED":
        click.echo(f"mnp: job {result.job_id} {result.state}: {result.reason} (exit {result.exit_code})", err=True)
    sys.exit(result.exit_code)


@cli.command(hidden=True)
def agent() -> None:
    """Node agent (started by mnp on every node; reads its job handoff on stdin)."""
    from mnp.node.agent import main as agent_main

    sys.exit(agent_main())


def main() -> None:
    cli(prog_name="mnp")  # `mnp launch` and `mnp node` catch signals from the start: see mnp/cli/__init__.py
