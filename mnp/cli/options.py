"""Options more than one command shares: where the nodes come from, and how to reach them over SSH.

``launch`` and ``doctor`` both take them (:func:`node_source_options`) and turn them into the library's inputs
with :func:`nodes_from_options`: a host list and :class:`~mnp.cluster.ssh.SshOptions`, or ``(None, None)`` for
isolated local nodes.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from mnp.cli.types import Seconds

if TYPE_CHECKING:
    from mnp.cluster.hosts import HostSpec
    from mnp.cluster.sshopts import SshOptions

__all__ = ["node_source_options", "nodes_from_options"]

_NODE_SOURCE = [
    click.option("--hostfile", type=click.Path(dir_okay=False), envvar="MNP_HOSTFILE",
                 help="SSH hosts from a file (plain, MPICH host:N or Open MPI 'host slots=N' lines)."),
    click.option("--hosts", "hosts_opt", metavar="H1,H2:N,...", envvar="MNP_HOSTS",
                 help="SSH hosts on the command line."),
    click.option("--local", is_flag=True, help="Use local nodes even inside a Slurm allocation."),
    click.option("--ssh-user", envvar="MNP_SSH_USER", help="SSH user (default: ~/.ssh/config, then $USER)."),
    click.option("--ssh-port", type=click.IntRange(1, 65535), envvar="MNP_SSH_PORT", help="SSH port (default 22)."),
    click.option("--ssh-key", type=click.Path(dir_okay=False), envvar="MNP_SSH_KEY", help="SSH private key file."),
    click.option("--known-hosts", type=click.Path(dir_okay=False), envvar="MNP_KNOWN_HOSTS",
                 help="known_hosts file (default ~/.ssh/known_hosts)."),
    click.option("--ssh-config", type=click.Path(dir_okay=False), envvar="MNP_SSH_CONFIG",
                 help="ssh_config file (default ~/.ssh/config)."),
    click.option("--connect-timeout", type=Seconds(0.1, 3600), envvar="MNP_CONNECT_TIMEOUT",
                 help="Seconds to wait for each SSH host (default: ssh_config's ConnectTimeout, else 10)."),
    click.option("--fanout", type=click.IntRange(min=1), default=32, show_default=True,
                 help="SSH hosts dialled at once."),
    click.option("--remote-python", envvar="MNP_REMOTE_PYTHON",
                 help="Python on the hosts that has mnp (default: this interpreter's path)."),
    click.option("--insecure-no-host-key-check", is_flag=True,
                 help="INSECURE: accept any SSH host key (man-in-the-middle goes unnoticed)."),
    click.option("--via", type=click.Choice(["srun", "ssh", "pool"]), envvar="MNP_VIA",
                 help="How agents start on hosts: srun (default inside a Slurm allocation), ssh, or pool (forked "
                      "by the pool agents `mnp pool start` left on the hosts)."),
]


def node_source_options(f: Any) -> Any:
    """Where nodes come from, and how to reach them over SSH: the options `launch` and `doctor` share."""
    for option in reversed(_NODE_SOURCE):
        f = option(f)
    return f


def nodes_from_options(hostfile: str | None, hosts_opt: str | None, local: bool, ssh_user: str | None,
                       ssh_port: int | None, ssh_key: str | None, known_hosts: str | None, ssh_config: str | None,
                       connect_timeout: float | None, fanout: int, remote_python: str | None,
                       insecure_no_host_key_check: bool, via: str | None = None,
                       ) -> tuple[list[HostSpec] | None, SshOptions | None]:
    """(hosts, SSH options) from those options; (None, None) means local nodes."""
    from mnp.cluster.hosts import choose_via

    hosts = _hosts(hostfile, hosts_opt, local)
    how = choose_via(via, hosts is not None and hostfile is None and hosts_opt is None, os.environ)
    if hosts is None:
        if how == "pool":
            from mnp.errors import UsageError

            raise UsageError("--via pool: name the pool's hosts with --hostfile or --hosts")
        return None, None
    from mnp.cluster.sshopts import SshOptions

    return hosts, SshOptions(user=ssh_user, port=ssh_port, key_file=ssh_key, connect_timeout=connect_timeout,
                             known_hosts=known_hosts, config_file=ssh_config, fanout=fanout,
                             insecure_no_host_key_check=insecure_no_host_key_check, remote_python=remote_python,
                             via=how)


def _hosts(hostfile: str | None, hosts_opt: str | None, local: bool) -> list[HostSpec] | None:
    """Where the nodes come from: --hostfile, --hosts, a Slurm allocation, or None (local nodes)."""
    from mnp.cluster.hosts import load_hostfile, parse_hosts_option, slurm_hosts
    from mnp.errors import UsageError

    if hostfile is not None and hosts_opt is not None:
        raise UsageError("--hostfile and --hosts: give one or the other")
    if hostfile is not None:
        return load_hostfile(hostfile)
    if hosts_opt is not None:
        if not hosts_opt.strip():
            raise UsageError("--hosts: empty (give host names, e.g. --hosts node1,node2:4)")
        return parse_hosts_option(hosts_opt)
    if not local:
        found = slurm_hosts(os.environ)
        if found:
            click.echo(f"mnp: using the Slurm allocation's {len(found)} node(s) "
                       f"(job {os.environ.get('SLURM_JOB_ID', '?')}); --local to ignore it", err=True)
            return found
    return None
