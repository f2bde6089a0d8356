"""``mnp pool start|status|stop``: agents that stay on SSH hosts between jobs (:mod:`mnp.cluster.pool`).

Loaded by the ``mnp`` group only when asked for (``_Group.lazy``).
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from mnp.cli.options import node_source_options, nodes_from_options
from mnp.cli.types import Seconds

__all__ = ["pool"]

_EXAMPLES = """\b
Examples:
  mnp pool start --hostfile hosts           # a pool agent on each host (over SSH, preflight included)
  mnp launch --hostfile hosts --via pool job.yaml
  MNP_VIA=pool mnp run --hostfile hosts -n 8 ./a.out
  mnp pool status                           # every pool host: answering, its jobs' agents (now, so far), idle timeout
  mnp pool stop                             # all of them (--hostfile/--hosts: those)
"""


@click.group(epilog=_EXAMPLES)
def pool() -> None:
    """Keep an agent on each SSH host between jobs, so that jobs launched --via pool start without SSH.

    A pool agent is started over SSH with the usual checks (host keys, Python, mnp, MPI), then forks each job's
    agent when asked over CURVE by the client key that started it; it exits after --idle seconds with no job.
    """


def _names(where: dict[str, Any]) -> list[str] | None:
    if where.get("hostfile") is None and where.get("hosts_opt") is None:
        return None
    hosts, _ = nodes_from_options(**{**where, "local": True, "via": None})
    return [h.name for h in hosts] if hosts else None


def _rows(rows: list[tuple[str, str]], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"hosts": [{"host": h, "state": s} for h, s in rows]}))
        return
    width = max((len(h) for h, _ in rows), default=4)
    for h, s in rows:
        click.echo(f"{h:{width}}  {s}")


@pool.command(epilog=_EXAMPLES)
@click.option("--idle", type=Seconds(1, 30 * 86400), default=3600, show_default=True,
              help="Seconds a pool agent stays with no job and no request, then exits.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@node_source_options
def start(idle: float, as_json: bool, **where: Any) -> None:
    """Start a pool agent on each host that has none answering (--hostfile or --hosts over SSH; inside a Slurm
    allocation, its nodes through one srun step that stays)."""
    from mnp.cluster.pool import start_pool
    from mnp.errors import UsageError

    hosts, ssh = nodes_from_options(**{**where, "via": None if where.get("via") == "pool" else where.get("via")})
    if hosts is None or ssh is None:
        raise UsageError("mnp pool start: name the hosts with --hostfile or --hosts (or run it inside a Slurm "
                         "allocation)")
    rows = start_pool(hosts, ssh, idle, lambda line: click.echo(f"mnp: {line}", err=True))
    from mnp.cli.front import start_front

    if start_front(idle) is None:
        click.echo("mnp: the pool's front (this machine's preloaded mnp) did not start: jobs --via pool start without "
                   "it (its log: $MNP_HOME/front.log)", err=True)
    _rows(rows, as_json)


@pool.command(epilog=_EXAMPLES)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@node_source_options
def status(as_json: bool, **where: Any) -> None:
    """Each pool host: whether its pool agent answers, its jobs' agents (running now, forked so far), when it
    started (exit 1: one did not answer)."""
    from mnp.cli.front import front_info
    from mnp.cluster.pool import ping_pool
    from mnp.control import pool as p

    found = ping_pool(_names(where))
    info = front_info()
    front = {"pid": info[0], "jobs": info[1]} if info else None
    out, down = [], 0
    for name, rec, ans in found:
        row: dict[str, Any] = {"host": name, "address": rec.get("address"), "port": rec.get("port")}
        if not rec:
            row["state"], down = "no pool agent started", down + 1
        elif isinstance(ans, p.Ready):
            row.update(state="up", hostname=ans.hostname, pid=ans.pid, agents=ans.agents, served=ans.served,
                       idle_s=ans.idle_s,
                       up_s=round(time.time() - ans.started, 1), mnp=ans.mnp, python=ans.python)
        else:
            row["state"], down = ("not answering" if ans is None else f"refused: {ans}"), down + 1
        out.append(row)
    if as_json:
        click.echo(json.dumps({"hosts": out, "front": front}))
    elif not out:
        click.echo("no pool (mnp pool start --hostfile FILE)")
    else:
        width = max(len(r["host"]) for r in out)
        for r in out:
            more = (f"  pid {r['pid']}, {r['agents']} job agent(s) ({r['served']} so far), up {r['up_s']:g} s, "
                    f"exits after {r['idle_s']:g} s idle  ({r['address']}:{r['port']})" if r["state"] == "up" else "")
            click.echo(f"{r['host']:{width}}  {r['state']}{more}")
        click.echo(f"front: pid {front['pid']}, {front['jobs']} job(s) so far (jobs --via pool start here by fork)"
                   if front else
                   "front: none (jobs --via pool start without it: mnp pool start starts one)")
    raise SystemExit(1 if down else 0)


@pool.command(epilog=_EXAMPLES)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@node_source_options
def stop(as_json: bool, **where: Any) -> None:
    """Stop the pool agents (all, or those of --hostfile/--hosts); their running jobs' agents are told to stop."""
    from mnp.cli.front import stop_front
    from mnp.cluster.pool import PoolStore, stop_pool

    rows = stop_pool(_names(where))
    if not PoolStore.load().hosts:
        stop_front()
    if not rows and not as_json:
        click.echo("no pool agent to stop")
        return
    _rows(rows, as_json)
