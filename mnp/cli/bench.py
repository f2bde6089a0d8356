"""``mnp bench``: the benchmark suites (``bench/``, the ``bench`` extra) run as mnp jobs on the usual nodes.

``mnp bench osu BENCHMARK`` (OSU Micro-Benchmarks 7.4's text, exactly, then ``# mnp:`` comment lines),
``mnp bench md`` (the GROMACS-like MD run) and ``mnp bench fabric`` (shared memory within a node against the
network between nodes, OSU and MD, optionally a report with plots). Each repeats its jobs (``--reps``) and gives
every figure with its min/median/max; ``--json`` prints one JSON object instead. Progress (sizes or steps done)
goes to stderr while jobs run. Loaded by the ``mnp`` group only when asked for (``_Group.lazy``); the suites are
imported inside the commands, so ``mnp --help`` never loads them.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from mnp.cli.options import node_source_options, nodes_from_options
from mnp.cli.types import MAX_NODES_OPTION
from mnp.errors import UsageError

__all__ = ["bench"]

OSU_BENCHMARKS = ("latency", "bw", "bibw", "allreduce")  # bench.osu's registry, named here so --help needs no import
PT2PT = ("latency", "bw", "bibw")


class _Progress:
    """``mnp bench: <label>: sizes 3/22`` on stderr: one line updated in place on a terminal; elsewhere the first,
    the last, and at most one a second between."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, label: str, what: str, done: int, total: int) -> None:
        text = f"mnp bench: {label}: {what} {done}/{total}"
        now = time.monotonic()
        if self.tty:
            sys.stderr.write("\r\033[K" + text + ("\n" if done == total else ""))
        elif done in (1, total) or now - self.last >= 1.0:
            sys.stderr.write(text + "\n")
        else:
            return
        sys.stderr.flush()
        self.last = now

    @staticmethod
    def note(text: str) -> None:
        click.echo(f"mnp: warning: {text}", err=True)


def _needs_suites(local: bool, path: str = "numba") -> None:
    """On local nodes the ranks run this Python: the bench extra must be here."""
    wanted = ["numpy", "mpi4py"] + (["numba"] if path == "numba" else [])
    missing = [m for m in wanted if importlib.util.find_spec(m) is None]
    if local and missing:
        raise UsageError(f"mnp bench needs the bench extra (pip install 'mnp[bench]'): {', '.join(missing)} "
                         "not installed for " + sys.executable)


def _where(nodes: int, ranks_per_node: int, transport: str, isolate: bool | None, where: dict[str, Any]) -> Any:
    from bench.jobs import Nodes

    hosts, ssh = nodes_from_options(**where)
    if transport == "shm" and nodes != 1:
        raise UsageError(f"--transport shm: all ranks on one node (got --nodes {nodes})")
    return Nodes(nodes, ranks_per_node, transport, hosts, ssh, isolate)


def _placement(f: Any) -> Any:
    for option in reversed([
        click.option("-n", "--nodes", type=click.IntRange(1, MAX_NODES_OPTION),
                     help="Nodes (default: 1 with --transport shm, else 2)."),
        click.option("--ranks-per-node", type=click.IntRange(min=1), help="Ranks on each node."),
        click.option("--transport", type=click.Choice(["auto", "tcp", "efa", "shm"]), default="auto",
                     show_default=True, help="shm: every rank on one node; else between nodes."),
        click.option("--reps", type=click.IntRange(1, 100), default=3, show_default=True,
                     help="Separate jobs per figure: each figure is their median, with min and max."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text."),
        click.option("--isolate/--no-isolate", default=None,
                     help="Local nodes in their own namespaces (default: when root) or as plain processes."),
        node_source_options,
    ]):
        f = option(f)
    return f


@click.group()
def bench() -> None:
    """Benchmarks as mnp jobs: OSU micro-benchmarks, MD, and the whole fabric comparison.

    \b
    Examples:
      mnp bench osu latency                          # OMB-format latency, shared memory within one node
      mnp bench md -n 2 --ranks-per-node 1           # the MD run across two nodes
      mnp bench fabric --report fabric-report        # shm against the network, with plots
    """


@bench.command()
@click.argument("benchmark", type=click.Choice(OSU_BENCHMARKS))
@click.option("--path", type=click.Choice(["numba", "mpi4py", "c"]), default="numba", show_default=True,
              help="How MPI is called: compiled loop (numba), mpi4py, or the C reference (built with mpicc).")
@click.option("-m", "sizes", metavar="[MIN:]MAX", help="Message sizes in bytes (default: OMB's).")
@click.option("-i", "iterations", type=click.IntRange(min=1), metavar="ITER", help="Timed iterations per size.")
@click.option("-x", "warmup", type=click.IntRange(min=0), metavar="WARMUP", help="Warm-up iterations per size.")
@click.option("-W", "window", type=click.IntRange(min=1), default=64, show_default=True, help="bw/bibw window.")
@click.option("-f", "full", is_flag=True, help="allreduce: min, max and iterations columns too.")
@_placement
def osu(benchmark: str, path: str, sizes: str | None, iterations: int | None, warmup: int | None, window: int,
        full: bool, nodes: int | None, ranks_per_node: int | None, transport: str, reps: int, as_json: bool,
        isolate: bool | None, **where: Any) -> None:
    """One OSU benchmark: OMB 7.4's table of the medians over --reps jobs, then '# mnp:' comment lines.

    Point to point (latency, bw, bibw) runs 2 ranks: on one node with --transport shm, else one on each of two
    nodes. allreduce: --nodes (2) x --ranks-per-node (1; 2 with shm).

    \b
    Examples:
      mnp bench osu latency --transport shm          # both ranks on one node: shared memory
      mnp bench osu latency --path c -m 1048576      # the C reference, two nodes
      mnp bench osu bw --json --reps 5
      mnp bench osu allreduce -n 4 --ranks-per-node 2 -f
    """
    from bench.osu.runs import OsuRequest, run_osu
    from bench.osu.suite import parse_size_range

    if sizes:
        try:
            parse_size_range(sizes)
        except ValueError as e:
            raise UsageError(str(e)) from None
    n = nodes or (1 if transport == "shm" else 2)
    rpn = ranks_per_node or ((2 if n == 1 else 1) if benchmark in PT2PT else (2 if transport == "shm" else 1))
    place = _where(n, rpn, transport, isolate, where)
    _needs_suites(place.hosts is None, path)
    binary = _c_binary(place) if path == "c" else None
    progress = _Progress()
    figs = run_osu(OsuRequest(benchmark, place, path, sizes, iterations, warmup, window, full, reps, binary),
                   on_progress=progress, on_note=progress.note)
    click.echo(json.dumps(figs.to_json()) if as_json else "\n".join(figs.text(full)))


def _c_binary(place: Any) -> Path:
    from bench.cref import c_reference

    if place.hosts is not None:
        raise UsageError("--path c: the C reference is built here, for local nodes only")
    binary, how = c_reference()
    if binary is None:
        raise UsageError(f"--path c: cannot build the C reference: {how}")
    return binary


@bench.command()
@click.option("--cells", type=click.IntRange(1, 200), default=20, show_default=True,
              help="fcc cells per side, 4 atoms each (20: LAMMPS in.lj's 32,000 atoms).")
@click.option("--steps", type=click.IntRange(1), default=200, show_default=True, help="MD steps per run.")
@click.option("--rf", is_flag=True, help="Charges and reaction-field electrostatics.")
@_placement
def md(cells: int, steps: int, rf: bool, nodes: int | None, ranks_per_node: int | None, transport: str, reps: int,
       as_json: bool, isolate: bool | None, **where: Any) -> None:
    """The GROMACS-like MD run: ns/day and steps/s (median, min, max over --reps jobs).

    Default: 1 node x 2 ranks over shared memory; --nodes 2 --ranks-per-node 1 for the same ranks across nodes.

    \b
    Examples:
      mnp bench md                                   # LAMMPS in.lj's 32,000 atoms, 1 node x 2 ranks
      mnp bench md -n 2 --ranks-per-node 1 --json    # the same ranks across two nodes
    """
    from bench.md.runs import MdRequest, run_md

    n = nodes or (1 if transport in ("shm", "auto") else 2)
    place = _where(n, ranks_per_node or (2 if n == 1 else 1), transport, isolate, where)
    _needs_suites(place.hosts is None)
    progress = _Progress()
    figs = run_md(MdRequest(place, cells, steps, reps, ("--rf",) if rf else ()), on_progress=progress,
                  on_note=progress.note)
    click.echo(json.dumps(figs.to_json()) if as_json else "\n".join(figs.text()))


@bench.command()
@click.option("-n", "--nodes", type=click.IntRange(2, MAX_NODES_OPTION), default=2, show_default=True,
              help="Nodes; the network runs use the first two, the MD runs up to all of them.")
@click.option("--paths", default="c,numba,mpi4py", show_default=True,
              help="Call paths for OSU, comma-separated (c: the C reference, when mpicc can build it).")
@click.option("--max-size", type=click.IntRange(1), default=4 << 20, show_default=True,
              help="Largest OSU message size in bytes.")
@click.option("-i", "iterations", type=click.IntRange(min=1), help="OSU timed iterations per size (default OMB's).")
@click.option("--md-ranks", default="1,2", show_default=True, help="MD rank counts, comma-separated.")
@click.option("--md-cells", type=click.IntRange(1, 200), default=12, show_default=True,
              help="MD system: fcc cells per side, 4 atoms each.")
@click.option("--md-steps", type=click.IntRange(1), default=100, show_default=True, help="MD steps per run.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), help="Write report.html and PNG plots here.")
@click.option("--reps", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Separate jobs per figure: each figure is their median, with min and max.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--isolate/--no-isolate", default=None,
              help="Local nodes in their own namespaces (default: when root) or as plain processes.")
@node_source_options
def fabric(nodes: int, paths: str, max_size: int, iterations: int | None, md_ranks: str, md_cells: int,
           md_steps: int, report_dir: str | None, reps: int, as_json: bool, isolate: bool | None,
           **where: Any) -> None:
    """Shared memory within a node against the network between nodes: OSU latency and bandwidth per call path,
    and MD ns/day against ranks (within one node, and the same ranks across nodes).

    \b
    Examples:
      mnp bench fabric --report fabric-report        # report.html with latency, bandwidth and MD plots
      mnp bench fabric --hostfile hosts --paths numba,mpi4py --json
    """
    from bench.fabric import FabricRequest, run_fabric

    want = [p.strip() for p in paths.split(",") if p.strip()]
    if not want or any(p not in ("c", "numba", "mpi4py") for p in want):
        raise UsageError(f"--paths: comma-separated c, numba, mpi4py; got {paths!r}")
    try:
        ranks = sorted({int(r) for r in md_ranks.split(",") if r.strip()})
    except ValueError:
        raise UsageError(f"--md-ranks: comma-separated rank counts; got {md_ranks!r}") from None
    if not ranks or ranks[0] < 1 or ranks[-1] > nodes * 64:
        raise UsageError(f"--md-ranks: from 1 to {nodes * 64}; got {md_ranks!r}")
    hosts, ssh = nodes_from_options(**where)
    _needs_suites(hosts is None, "numba" if "numba" in want else "mpi4py")
    progress = _Progress()
    result = run_fabric(FabricRequest(nodes, hosts, ssh, isolate, tuple(want), max_size, iterations, tuple(ranks),
                                      md_cells, md_steps, reps), on_progress=progress, on_note=progress.note)
    if report_dir:
        from bench.report import write_report

        index = write_report(result, Path(report_dir))
        click.echo(f"mnp bench: report written to {index}", err=True)
    click.echo(json.dumps(result.to_json()) if as_json else "\n".join(result.text()))
