"""The ``mpirun`` back-end: the MPI's own launcher on the main node, its daemons started through mnp.

mnp writes the launcher a hostfile from its plan (node addresses, ranks per node as slots, so ranks land in the
same blocks as under PMI) and names ``mnp-rsh`` as its remote shell with tree spawn off (every daemon is started
from the main node, through the control plane, on the node the launcher names). Each rank runs under a small
``sh`` wrapper that sets ``MNP_RANK``/``MNP_LOCAL_RANK`` and sends its stdout and stderr into its node agent's
per-rank FIFOs (``$MNP_IO_DIR``), so output is kept and shown per rank without the launcher's stdio forwarding
(Hydra's mixes lines of different ranks). Agents substitute ``{hostfile}`` and ``{rsh}`` with local paths.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mnp.errors import LaunchError, SpecError, UsageError
from mnp.launch.detect import launcher_major
from mnp.placement import Policy, cpu_list
from mnp.plan import JobPlan, NodePlan

__all__ = ["LauncherCommand", "binding_flags", "launcher_hosts", "mpirun_command"]

_WRAPPER = ('MNP_RANK=${OMPI_COMM_WORLD_RANK:-$PMI_RANK}; MNP_LOCAL_RANK=${OMPI_COMM_WORLD_LOCAL_RANK:-'
            '$MPI_LOCALRANKID}; export MNP_RANK MNP_LOCAL_RANK; '
            r'case "$MNP_RANK" in *[!0-9]*|"") c= ;; *) eval "c=\${MNP_CPUS_$MNP_RANK:-}" ;; esac; '
            'if [ -n "$c" ]; then if command -v taskset >/dev/null 2>&1; then set -- taskset -c "$c" "$@"; '
            'else echo "mnp: taskset not found: rank $MNP_RANK not bound to CPUs $c" >&2; fi; fi; '
            'if [ -n "$MNP_IO_DIR" ]; then '
            'exec "$@" >"$MNP_IO_DIR/$MNP_RANK.stdout" 2>"$MNP_IO_DIR/$MNP_RANK.stderr"; fi; exec "$@"')


@dataclass(frozen=True)
class LauncherCommand:
    argv: list[str]
    files: dict[str, str]
    env: dict[str, str]
    #: the hostfile's name for each node -> its index: route the launcher's remote commands (``mnp-rsh HOST``)
    #: by these first, since two nodes may share an address (see :func:`launcher_hosts`)
    hosts: dict[str, int] = field(default_factory=dict)
    #: rank -> the CPUs the rank's wrapper binds it to (``taskset``), handed to its node as ``MNP_CPUS_<rank>``
    bind_cpus: dict[int, tuple[int, ...]] = field(default_factory=dict)

    def node_env(self, node: NodePlan) -> dict[str, str]:
        """What this node's environment adds for its ranks' wrappers: each bound rank's CPUs."""
        return {f"MNP_CPUS_{r}": cpu_list(self.bind_cpus[r]) for r in node.ranks if self.bind_cpus.get(r)}


# Measured here: Open MPI 5.0.11 (the PyPI wheel), two nodes on 127.0.0.1 through an ssh stand-in, btl tcp or
# ofi: MPI_Init completes, the first barrier never does (its btl/tcp will not pair a peer with an address this
# host holds: open-mpi/ompi#12259). Open MPI 4.1 (Debian) runs the same hostfile.
_SHARED_ADDRESS = ("mpi openmpi: Open MPI 5 cannot connect ranks of different nodes that share one IP address "
                   "(--no-isolate nodes are all this machine): its first message would hang; run as root for "
                   "isolated nodes, or put the ranks on one node (-N 1 -n RANKS)")


def _launcher(prefix: Path | None, names: tuple[str, ...]) -> str:
    """The launcher that belongs to the program's MPI: in its installation's bin/, else on PATH."""
    for n in names:
        if prefix is not None and (prefix / "bin" / n).exists():
            return str(prefix / "bin" / n)
    for n in names:
        found = shutil.which(n)
        if found:
            return found
    return names[0]


def launcher_hosts(plan: JobPlan) -> list[tuple[str, int, int]]:
    """(name for the launcher's hostfile, slots, node index) per node, every name distinct.

    Open MPI refuses a hostfile that gives one host two ``slots=`` lines ("multiple definitions of the slot
    count", exit 250), and merging them would run the second node's ranks under the first node's launcher, with
    its environment and its output FIFOs. So nodes that share a loopback address (``--no-isolate``: every node is
    127.0.0.1 on this machine) get loopback addresses of their own, 127.0.0.2, 127.0.0.3, ...: all of 127/8 reaches
    this machine, the launcher takes each for a separate host and starts a daemon there through ``mnp-rsh``, which
    the coordinator routes by :attr:`LauncherCommand.hosts`. Checked with Open MPI 4.1.4 (Debian): hostfile
    ``127.0.0.1 slots=1`` / ``127.0.0.2 slots=1``, one rank under a daemon started through the agent. Other shared
    addresses (two SSH hosts that are one machine) cannot be told apart: :class:`LaunchError`.
    """
    taken = {n.address for n in plan.nodes}
    seen: set[str] = set()
    out: list[tuple[str, int, int]] = []
    spare = 2
    for n in plan.nodes:
        name = n.address
        if name in seen:
            if not name.startswith("127."):
                raise LaunchError(f"nodes share the address {name}: the mpirun launcher needs one per node (use "
                                  "launcher: pmi, or one entry per host)")
            while f"127.0.0.{spare}" in taken:
                spare += 1
            if spare > 254:
                raise LaunchError("more than 253 nodes share 127.0.0.1: the mpirun launcher needs one address each")
            name = f"127.0.0.{spare}"
            taken.add(name)
        seen.add(name)
        out.append((name, n.nranks, n.index))
    return out


def binding_flags(family: str, major: int | None, over_nodes: str, policy: Policy | None,
                  overload: bool = False) -> list[str]:
    """The launcher's own mapping and binding options: ranks over nodes as mnp numbered them (Open MPI ``--map-by
    slot`` fills each host's slots in turn, ``node`` deals round robin) and, with a ``policy``, where it binds
    them (Open MPI 4 says ``socket``, 5 ``package``; Hydra ``-bind-to``/``-map-by``). Without a policy the
    launcher's binding is left to the environment (off on nodes that share a machine)."""
    if family == "openmpi":
        socket = "socket" if major == 4 else "package"
        if over_nodes == "cyclic":
            mapping = "node"
        else:
            mapping = socket if policy is not None and policy.within == "cyclic" else "slot"
        flags = ["--map-by", mapping]
        if policy is not None:
            bind = {"core": "core", "socket": socket}.get(policy.bind, "none")
            flags += ["--bind-to", bind + (":overload-allowed" if overload and bind == "core" else "")]
        return flags
    if over_nodes == "cyclic":
        raise SpecError("map_by", "Hydra's mpiexec cannot deal ranks round robin over nodes here (its hosts are "
                        "filled in turn): use launcher: pmi, or block (slot) mapping")
    if policy is None:
        return []
    return ["-bind-to", policy.bind, "-map-by", "socket" if policy.within == "cyclic" else "core"]


def mpirun_command(family: str, plan: JobPlan, prefix: Path | None = None, *, over_nodes: str = "block",
                   policy: Policy | None = None, overload: bool = False,
                   bind_cpus: dict[int, tuple[int, ...]] | None = None) -> LauncherCommand:
    """The launcher's command line for the whole job, run on the main node. ``policy``: the MPI binds (nodes of
    different machines); ``bind_cpus``: mnp binds these ranks in their wrappers (:mod:`mnp.coordinator.binding`)."""
    if over_nodes == "cyclic" and len({n.nranks for n in plan.nodes}) > 1:
        raise SpecError("map_by", "round robin over nodes with mpirun needs the same number of ranks on every node "
                        f"(these have {', '.join(str(n.nranks) for n in plan.nodes)}): use launcher: pmi or block")
    command = plan.nodes[plan.main_node].command
    named = launcher_hosts(plan)
    hosts = {name: index for name, _, index in named}
    wrap = ["/bin/sh", "-c", _WRAPPER, "mnp-rank"]
    if family == "openmpi":
        hostfile = "".join(f"{name} slots={slots}\n" for name, slots, _ in named)
        mpirun = _launcher(prefix, ("mpirun", "prterun"))
        major = launcher_major(mpirun)
        if major == 4:  # ORTE: --mca plm_rsh_*, --tag-output
            opts = ["--mca", "plm_rsh_agent", "{rsh}", "--mca", "plm_rsh_no_tree_spawn", "1"]
        else:  # PRRTE (Open MPI 5): --prtemca plm_ssh_*
            if any(name != plan.nodes[index].address for name, _, index in named):
                raise UsageError(_SHARED_ADDRESS)
            opts = ["--prtemca", "plm_ssh_agent", "{rsh}", "--prtemca", "plm_ssh_no_tree_spawn", "1"]
        argv = [mpirun, "--hostfile", "{hostfile}", "-np", str(plan.size),
                *binding_flags(family, major, over_nodes, policy, overload), *opts, *wrap, *command]
        env = {}
        if os.geteuid() == 0:
            env = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                   "PRTE_ALLOW_RUN_AS_ROOT": "1", "PRTE_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
        return LauncherCommand(argv, {"hostfile": hostfile}, env, hosts, dict(bind_cpus or {}))
    hostfile = "".join(f"{name}:{slots}\n" for name, slots, _ in named)
    argv = [_launcher(prefix, ("mpiexec.hydra", "mpiexec")), "-f", "{hostfile}", "-n", str(plan.size),
            "-launcher", "ssh", "-launcher-exec", "{rsh}", *binding_flags(family, None, over_nodes, policy),
            "-genvnone", *wrap, *command]  # -genvnone: each node's ranks keep their node's environment
    return LauncherCommand(argv, {"hostfile": hostfile}, {"HYDRA_LAUNCHER_AUTOFORK": "0"}, hosts,
                           dict(bind_cpus or {}))
