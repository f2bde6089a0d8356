"""``mnp doctor``: parse, build a :class:`~mnp.doctor.run.DoctorRequest`, run the probe, print the report.

Loaded by the ``mnp`` group only when asked for (``_Group.lazy``). The checks themselves are in :mod:`mnp.doctor`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from mnp.cli.options import node_source_options, nodes_from_options
from mnp.cli.types import MAX_NODES_OPTION

__all__ = ["doctor"]


@click.command()
@click.option("-n", "--nodes", type=click.IntRange(1, MAX_NODES_OPTION), envvar="MNP_NODES",
              help="Number of nodes (local nodes: default 2; hosts: default all of them).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (checks, node facts, matrix).")
@click.option("--ranks-per-node", type=click.IntRange(min=1),
              help="The job's ranks per node, for the /dev/shm check (default: slots, else each node's CPUs).")
@click.option("--transport", type=click.Choice(["auto", "tcp", "efa", "shm"]), default="auto", show_default=True,
              help="The job's transport: is it possible on these nodes?")
@click.option("--isolate/--no-isolate", default=None,
              help="Local nodes in their own namespaces (default: when root) or as plain processes.")
@click.option("--python", "python", metavar="PATH",
              help="The job's interpreter: the probe runs with its MPI (e.g. .venv-ompi/bin/python for Open MPI).")
@click.option("--mpi", type=click.Choice(["auto", "mpich", "openmpi", "impi"]), default="auto", show_default=True,
              help="The job's MPI family (auto: the interpreter's).")
@click.option("--env", "env", multiple=True, metavar="KEY=VALUE",
              help="The job's environment for the probe (transport settings: FI_*, OMPI_MCA_*...). Repeatable.")
@click.option("--matrix", "matrix_file", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Also write the whole latency matrix to FILE: JSON if it ends in .json, else CSV (the text "
                   "report shows a summary and the slowest pairs above 16 nodes).")
@node_source_options
def doctor(nodes: int | None, as_json: bool, ranks_per_node: int | None, transport: str, isolate: bool | None,
           python: str | None, mpi: str, env: tuple[str, ...], matrix_file: str | None, **where: Any) -> None:
    """Check the nodes before a job runs: reachability, clocks, MPI, CPUs, /dev/shm, interfaces, transport, the
    path every pair takes, and its latency against that path's band.

    Exit 0 when a launch should work, 1 when it would fail (slow pairs within their band only warn).

    \b
    Examples:
      mnp doctor                                     # two local nodes
      mnp doctor --hostfile hosts --json             # every host in the file, as one JSON object
      mnp doctor -n 4 --python .venv-ompi/bin/python # the probe with Open MPI's ranks
    """
    from mnp.doctor import DoctorRequest, render, run_doctor
    from mnp.errors import UsageError

    pairs = {}
    for item in env:
        key, eq, value = item.partition("=")
        if not eq or not key or not key.replace("_", "a").isalnum():
            raise UsageError(f"--env: '{item}' is not KEY=VALUE")
        pairs[key] = value
    hosts, ssh = nodes_from_options(**where)
    report = run_doctor(DoctorRequest(nodes=nodes, hosts=hosts, ssh=ssh, isolate=isolate,
                                      ranks_per_node=ranks_per_node, transport=transport, python=python, mpi=mpi,
                                      env=pairs))
    if matrix_file is not None:
        _write_matrix(report, matrix_file)
    click.echo(json.dumps(report.to_json()) if as_json else render(report))
    sys.exit(report.exit_code)


def _write_matrix(report: Any, path: str) -> None:
    """``--matrix FILE``: the whole matrix, JSON or CSV by the file's name (nothing when the probe did not run)."""
    from mnp.doctor.matrix import matrix_csv, matrix_json
    from mnp.errors import UsageError

    probe = report.probe or {}
    if not probe.get("latency_us"):
        click.echo(f"mnp: no latency matrix to write to {path} (the probe measured none)", err=True)
        return
    text = json.dumps(matrix_json(probe, report.latency_pairs)) + "\n" if path.endswith(".json") else \
        matrix_csv(probe)
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise UsageError(f"--matrix: cannot write {path}: {e.strerror}") from None
