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
from dataclasses import dataclass
from pathlib import Path

from mnp.plan import JobPlan
from mnp.launch.detect import launcher_major

__all__ = ["LauncherCommand", "mpirun_command"]

_WRAPPER = ('MNP_RANK=${OMPI_COMM_WORLD_RANK:-$PMI_RANK}; MNP_LOCAL_RANK=${OMPI_COMM_WORLD_LOCAL_RANK:-'
            '$MPI_LOCALRANKID}; export MNP_RANK MNP_LOCAL_RANK; if [ -n "$MNP_IO_DIR" ]; then '
            'exec "$@" >"$MNP_IO_DIR/$MNP_RANK.stdout" 2>"$MNP_IO_DIR/$MNP_RANK.stderr"; fi; exec "$@"')


@dataclass(frozen=True)
class LauncherCommand:
    argv: list[str]
    files: dict[str, str]
    env: dict[str, str]


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


def mpirun_command(family: str, plan: JobPlan, prefix: Path | None = None) -> LauncherCommand:
    """The launcher's command line for the whole job, run on the main node."""
    command = plan.nodes[plan.main_node].command
    wrap = ["/bin/sh", "-c", _WRAPPER, "mnp-rank"]
    if family == "openmpi":
        hostfile = "".join(f"{n.address} slots={n.nranks}\n" for n in plan.nodes)
        mpirun = _launcher(prefix, ("mpirun", "prterun"))
        if launcher_major(mpirun) == 4:  # ORTE: --mca plm_rsh_*, --tag-output
            opts = ["--mca", "plm_rsh_agent", "{rsh}", "--mca", "plm_rsh_no_tree_spawn", "1"]
        else:  # PRRTE (Open MPI 5): --prtemca plm_ssh_*
            opts = ["--prtemca", "plm_ssh_agent", "{rsh}", "--prtemca", "plm_ssh_no_tree_spawn", "1"]
        argv = [mpirun, "--hostfile", "{hostfile}", "-np", str(plan.size), "--map-by", "slot", *opts, *wrap,
                *command]
        env = {}
        if os.geteuid() == 0:
            env = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                   "PRTE_ALLOW_RUN_AS_ROOT": "1", "PRTE_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
        return LauncherCommand(argv, {"hostfile": hostfile}, env)
    hostfile = "".join(f"{n.address}:{n.nranks}\n" for n in plan.nodes)
    argv = [_launcher(prefix, ("mpiexec.hydra", "mpiexec")), "-f", "{hostfile}", "-n", str(plan.size),
            "-launcher", "ssh", "-launcher-exec", "{rsh}",
            "-genvnone", *wrap, *command]  # -genvnone: each node's ranks keep their node's environment
    return LauncherCommand(argv, {"hostfile": hostfile}, {"HYDRA_LAUNCHER_AUTOFORK": "0"})
