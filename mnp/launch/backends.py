"""Launch back-ends: how a plan becomes processes on the nodes. One small class each, one interface.

- :class:`DirectPmi`: every node's agent starts its ranks itself and serves them PMI-1 (MPICH, Intel MPI, and
  programs without MPI). The coordinator relays the barriers.
- :class:`Mpirun`: the MPI's own launcher (Open MPI's ``mpirun``, Hydra's ``mpiexec``) runs on the main node; its
  daemons are started on the other nodes through mnp's control plane (``mnp-rsh`` -> ``Rexec`` -> ``Exec``), and
  its ranks' output comes back per rank through FIFOs.

A back-end answers four questions for the coordinator: what ``Start`` each node gets, which processes the job
waits for (and on which node each runs), which node may ask for remote commands, and how to name a process in a
failure line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mnp.control.messages import RankSpec, Start
from mnp.launch.mpirun import mpirun_command
from mnp.placement import Policy
from mnp.plan import JobPlan

__all__ = ["LAUNCHER", "Backend", "DirectPmi", "Mpirun", "backend_for", "MpiChoice", "check_layout", "choose_mpi"]

LAUNCHER = -1  # the "rank" number of an mpirun/mpiexec process in the agents' bookkeeping


@dataclass
class Backend:
    """The interface. ``waits``: process (rank, or :data:`LAUNCHER`) -> the node it runs on."""

    name: str = "base"
    waits: dict[int, int] = field(default_factory=dict)
    #: every rank's node, also those a launcher starts (output is accepted from that node only)
    rank_nodes: dict[int, int] = field(default_factory=dict)
    #: the node whose launcher may ask for remote commands (None: no remote commands in this job)
    rexec_node: int | None = None
    #: names the launcher calls the nodes by (its hostfile's) -> node index
    hosts: dict[str, int] = field(default_factory=dict)
    #: node -> the processes there whose stdin mnp feeds (see :meth:`stdin_for`)
    stdin_targets: dict[int, list[int]] = field(default_factory=dict)
    #: rank -> the CPUs mnp binds it to (:mod:`mnp.coordinator.binding`; empty: mnp binds nothing)
    bind_cpus: dict[int, tuple[int, ...]] = field(default_factory=dict)
    #: the binding the MPI's own launcher is told to apply (None: its binding is left as the environment says)
    mpi_policy: Policy | None = None
    #: ranks over nodes: "block" or "cyclic" (the plan's numbering; a launcher must be told the same)
    over_nodes: str = "block"
    #: the launcher may bind more ranks than cores to one core (Open MPI's overload-allowed)
    overload: bool = False

    def starts(self, plan: JobPlan, cwd: str, stdin: str = "none") -> dict[int, Start]:
        raise NotImplementedError

    @staticmethod
    def stdin_ranks(plan: JobPlan, stdin: str) -> list[int]:
        """Which ranks read mnp's standard input: ``0`` (mpirun's and Hydra's habit), ``all`` (srun's), ``none``,
        or one rank's number."""
        if stdin == "none":
            return []
        if stdin == "all":
            return list(range(plan.size))
        return [int(stdin)] if 0 <= int(stdin) < plan.size else []

    def who(self, node: int, rank: int) -> str:
        return f"node {node} rank {rank}"


class DirectPmi(Backend):
    def __init__(self) -> None:
        super().__init__("pmi")

    def starts(self, plan: JobPlan, cwd: str, stdin: str = "none") -> dict[int, Start]:
        out = {}
        readers = set(self.stdin_ranks(plan, stdin))
        for node in plan.nodes:
            for rank in node.ranks:
                self.waits[rank] = self.rank_nodes[rank] = node.index
            mine = [r for r in node.ranks if r in readers]
            if mine:
                self.stdin_targets[node.index] = mine
            out[node.index] = Start(plan.kvsname, plan.size, plan.mapping, cwd, node.env,
                                    [RankSpec(r, i, node.command, cpus=_cpus(self.bind_cpus.get(r)))
                                     for i, r in enumerate(node.ranks)],
                                    stdin_ranks=mine, processes=node.processes,
                                    ranks_depend_on=node.ranks_depend_on)
        return out


class Mpirun(Backend):
    def __init__(self, family: str, prefix: Path | None = None) -> None:
        super().__init__("mpirun")
        self.family = family
        self.prefix = prefix

    def starts(self, plan: JobPlan, cwd: str, stdin: str = "none") -> dict[int, Start]:
        """The launcher reads mnp's stdin and hands it to its rank 0 (what mpirun and Hydra do): any ``stdin``
        other than ``none`` feeds the launcher."""
        lc = mpirun_command(self.family, plan, self.prefix, over_nodes=self.over_nodes, policy=self.mpi_policy,
                            overload=self.overload, bind_cpus=self.bind_cpus)
        if stdin != "none":
            self.stdin_targets = {plan.main_node: [LAUNCHER]}
        self.rexec_node = plan.main_node
        self.hosts = dict(lc.hosts)
        self.waits = {LAUNCHER: plan.main_node}
        out = {}
        for node in plan.nodes:
            for rank in node.ranks:
                self.rank_nodes[rank] = node.index
            if node.index == plan.main_node:
                out[node.index] = Start(plan.kvsname, plan.size, plan.mapping, cwd,
                                        {**node.env, **lc.env, **lc.node_env(node)},
                                        [RankSpec(LAUNCHER, 0, lc.argv, pmi=False)], files=lc.files, rsh=True,
                                        io_ranks=node.ranks, stdin_ranks=self.stdin_targets.get(node.index, []),
                                        processes=node.processes, ranks_depend_on=node.ranks_depend_on)
            else:  # its processes are the launcher's daemons, started on request (Exec)
                out[node.index] = Start(plan.kvsname, plan.size, plan.mapping, cwd, {**node.env, **lc.node_env(node)},
                                        [], daemons=True, io_ranks=node.ranks, processes=node.processes,
                                        ranks_depend_on=node.ranks_depend_on)
        self.rank_nodes[LAUNCHER] = plan.main_node
        return out

    def who(self, node: int, rank: int) -> str:
        return f"node {node} launcher ({'mpirun' if self.family == 'openmpi' else 'mpiexec'})"


def _cpus(cpus: tuple[int, ...] | None) -> list[int] | None:
    return list(cpus) if cpus else None


def backend_for(launcher: str, family: str, prefix: Path | None = None) -> Backend:
    return Mpirun(family, prefix) if launcher == "mpirun" else DirectPmi()


@dataclass(frozen=True)
class MpiChoice:
    family: str  # mpich | openmpi | impi | none ...
    why: str
    prefix: Path | None
    launcher: str  # pmi | mpirun


def check_layout(mpi: MpiChoice, map_by: str, source: str | None = None) -> None:
    """Refuse, before any node is made, a rank layout the job's launcher cannot follow: round robin over nodes
    with Hydra's ``mpiexec`` (:func:`mnp.launch.mpirun.binding_flags`)."""
    from mnp.errors import SpecError
    from mnp.placement import MAP_SPELLINGS

    if mpi.launcher == "mpirun" and mpi.family != "openmpi" and (MAP_SPELLINGS.get(map_by) or ("",))[0] == "cyclic":
        raise SpecError("map_by", f"{map_by}: Hydra's mpiexec cannot deal ranks round robin over nodes here (its "
                        "hosts are filled in turn): use launcher: pmi, or block (slot) mapping", source)


def choose_mpi(mpi: str, launcher: str, command: list[str], source: str | None = None) -> MpiChoice:
    """The job's MPI family (``mpi: auto`` looks at the program) and the back-end that starts it."""
    from mnp.errors import SpecError
    from mnp.launch.detect import FAMILY_NAMES, detect_mpi

    if not command:  # a job of processes only
        return MpiChoice("mpich", "no ranks: the job runs processes only (PMI-1 back-end, unused)", None, "pmi")
    found = detect_mpi(command)
    family = mpi if mpi != "auto" else found.family
    if mpi != "auto" and found.found and mpi != found.family:
        raise SpecError("mpi", f"{mpi}, but the program uses {FAMILY_NAMES[found.family]} "
                        f"({found.why.removeprefix('auto: ')}): set mpi: {found.family} or auto", source)
    why = found.why if mpi == "auto" else f"set in the job (mpi: {mpi})"
    prefix = found.prefix if found.family == family else None
    chosen = launcher if launcher != "auto" else ("mpirun" if family == "openmpi" else "pmi")
    if family == "openmpi" and chosen == "pmi":
        raise SpecError("launcher", "Open MPI cannot be started by PMI-1 (its ranks would each be a singleton); "
                        "use 'mpirun' or 'auto'", source)
    return MpiChoice(family, why, prefix, chosen)
