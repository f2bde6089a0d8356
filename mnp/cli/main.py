"""The ``mnp`` command: parse, call one library function, print. The one error boundary of mnp.

Exit statuses: the job's own exit code for ``launch``; 2 for bad input (usage, job file); 1 for other mnp errors;
130 after Ctrl-C. Tracebacks only with ``--debug``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from mnp import __version__
from mnp.cli.jobopts import JobOptions, job_options
from mnp.cli.options import nodes_from_options
from mnp.cli.types import Seconds
from mnp.errors import MnpError

__all__ = ["main", "cli"]


class _Group(click.Group):
    """The error boundary: MnpError and Click's own usage errors (unknown option, bad value, missing argument)
    become one line, ``mnp: error: ...``, and their exit status (2 for usage and spec errors). Commands in
    ``lazy`` are imported only when asked for, so every other command starts without them."""

    lazy = {"doctor": ("mnp.cli.doctor", "doctor"), "list": ("mnp.cli.jobs", "list_jobs"),
            "status": ("mnp.cli.jobs", "status"), "logs": ("mnp.cli.jobs", "logs"),
            "cancel": ("mnp.cli.jobs", "cancel"), "bench": ("mnp.cli.bench", "bench"),
            "pool": ("mnp.cli.pool", "pool")}

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

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command's first sentence, whole (wrapped, never cut off with '...')."""
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

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
    """mnp: launch MPI jobs across nodes (local isolated nodes by default).

    \b
    Examples:
      mnp run -N 2 -n 4 python app.py
      mnp launch -N 4 examples/hello.yaml
      mnp logs -f hello
    """
    ctx.obj = {"debug": debug}


_LAUNCH_EXAMPLES = """\b
Examples:
  mnp launch job.yaml                   # the job's own nodes and ranks
  mnp launch -N 4 job.yaml              # on 4 isolated local nodes
  mnp launch -N 2 -n 8 --json job.yaml  # 2 nodes x 4 ranks, one JSON object at the end
  mnp launch --hostfile hosts job.yaml  # on SSH hosts
  mnp launch --dry-run - < job.yaml     # the job from stdin: print the plan, run nothing
"""

_RUN_EXAMPLES = """\b
Examples:
  mnp run -n 4 python app.py            # 4 ranks on one local node
  mnp run -N 2 -n 4 python app.py       # 2 nodes x 2 ranks
  mnp run -N 2 --ntasks-per-node 2 -x OMP_NUM_THREADS=1 python app.py
  mnp run --hosts h1,h2 -np 8 --output 'out.%r' ./a.out
  mnp run -N 3 -n 3 --dry-run python app.py
"""


@cli.command(epilog=_LAUNCH_EXAMPLES)
@click.argument("job_file", type=click.Path(dir_okay=False, allow_dash=True))
@job_options
def launch(job_file: str, opts: JobOptions) -> None:
    """Run JOB_FILE's ranks on its nodes, stream their output, exit with the job's status.

    JOB_FILE is an mnp job (YAML) or an AWS Batch job definition (JSON); '-' reads it from stdin. Nodes come
    from --hostfile or --hosts (SSH), else from the Slurm allocation mnp runs in, else they are isolated local
    nodes made on this machine (-N of them). -N is nodes and -n ranks, as in srun and mpirun.
    """
    from mnp.cli.layout import job_from_file
    from mnp.cli.run import check_options, start

    check_options(opts)
    spec, source = _read_job(job_file)
    hosts, ssh = nodes_from_options(**opts.where)
    # an array's children share the hosts out by the job's node count, instead of one job on every host
    count = len(hosts) if hosts and opts.array is None and spec.array is None else None
    start(job_from_file(spec, source, opts, count, piped=job_file == "-"), opts, hosts, ssh)


def _read_job(job_file: str) -> tuple[Any, str | None]:
    """The job file's spec, or stdin's for '-' (at most the size a job file may have)."""
    from mnp.errors import SpecError, UsageError
    from mnp.spec.model import load_spec, spec_from_text
    from mnp.spec.textfile import MAX_BYTES

    if job_file != "-":
        return load_spec(job_file), job_file
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("JOB_FILE '-': stdin is a terminal; pipe a job in (mnp launch - < job.yaml)")
    data = sys.stdin.buffer.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise SpecError("", f"cannot read job: larger than {MAX_BYTES >> 20} MiB", "<stdin>")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError("", "cannot read job: not UTF-8 text", "<stdin>") from None
    return spec_from_text(text, "<stdin>", "stdin"), None


@cli.command(epilog=_RUN_EXAMPLES, context_settings={"allow_interspersed_args": False})
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@job_options
def run(command: tuple[str, ...], opts: JobOptions) -> None:
    """Run COMMAND as an MPI job without a job file, the way mpirun and srun do.

    -N nodes (default 1, or every host given), -n ranks in all (default: one per node), in blocks node by node.
    Options go before COMMAND; everything from COMMAND's first word on is COMMAND's. The job is validated and
    recorded as a job file's would be, and mnp exits with its status.
    """
    from mnp.cli.layout import job_from_command
    from mnp.cli.run import check_options, start

    check_options(opts)
    hosts, ssh = nodes_from_options(**opts.where)
    start(job_from_command(command, opts, len(hosts) if hosts and opts.array is None else None), opts, hosts, ssh)


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
@click.option("--transit-timeout", type=Seconds(0.001, 365 * 86400), metavar="SECONDS",
              help="Main node: seconds to RUNNING after which the job is stuck (one alert; overrides the job's).")
@click.option("--on-stuck", type=click.Choice(["wait", "fail"]), help="Main node: what a stuck job does.")
@click.option("--notify", metavar="CMD", envvar="MNP_NOTIFY",
              help="Main node: shell command given each stuck-in-transit alert as JSON on its stdin.")
def node(args: tuple[str, ...], port: int, join_timeout: float, dead_after: float, as_json: bool,
         grace: float, transit_timeout: float | None, on_stuck: str | None, notify: str | None) -> None:
    """Entry point of an AWS Batch multi-node container: `mnp node JOB_FILE` or `mnp node [--] COMMAND...`.

    Either every node gets the same JOB_FILE (an mnp job or a Batch job definition; also MNP_JOB_FILE), or each
    node gets its own rank COMMAND -- what a Batch job definition's container.command hands the entry point, so
    node ranges run unchanged. The main node (AWS_BATCH_JOB_NODE_INDEX == AWS_BATCH_JOB_MAIN_NODE_INDEX) runs the
    job and waits for the children to dial in; children run the node agent. Every node needs MNP_JOB_SECRET (the
    same value) from the job definition. The main container exits with the job's exit code.

    \b
    Example (a container's entry point):
      mnp node -- python train.py
      mnp node /job/job.yaml
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
    stuck = {k: v for k, v in (("transit_timeout", transit_timeout), ("on_stuck", on_stuck)) if v is not None}
    spec = spec.with_fields(**stuck) if stuck else spec
    click.echo(f"mnp node {me.index}: main node of job {me.job_id} (attempt {me.attempt}); waiting for "
               f"{me.num_nodes - 1} child node(s) on port {port}", err=True)
    result = run(LaunchRequest(spec=spec, spec_path=None if command else job_file, nodes=me.num_nodes,
                               events=Renderer(quiet_stdout=as_json), grace_s=grace, dead_s=dead_after,
                               join_timeout_s=join_timeout,
                               cluster=BatchMainCluster(me.job_id, me, port), job_id=me.job_id,
                               attempt=me.attempt, notify=notify))
    from mnp.cli.run import report

    report(result, as_json)


@cli.command(hidden=True)
def agent() -> None:
    """Node agent (started by mnp on every node; reads its job handoff on stdin)."""
    from mnp.node.agent import main as agent_main

    sys.exit(agent_main())


def main() -> None:
    try:
        cli(prog_name="mnp")  # `mnp launch` and `mnp node` catch signals from the start: see mnp/cli/__init__.py
    finally:
        # Leaving: the interpreter's last garbage collections skip every object made so far. Nothing is lost (no
        # finalizer of ours waits for a collection) and exit takes ~5 ms instead of ~50 (paramiko, pyzmq...).
        import gc

        gc.freeze()
        # and a Ctrl-C now cannot turn the status decided above into death by SIGINT (the interpreter's
        # finalization gives the signals their default action back before the process ends)
        import signal

        signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
