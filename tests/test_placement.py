"""Rank placement, pure: ranks over nodes (block, cyclic), the PMI mapping that describes them, and which CPUs each
rank is bound to within its node's own set -- many node shapes, more ranks than cores, nodes sharing a machine."""

from __future__ import annotations

import pytest

from mnp.cli.jobopts import _BIND, _MAP
from mnp.coordinator.binding import decide_binding, node_cpus, one_machine
from mnp.node.pmi import process_mapping
from mnp.placement import (
    BIND_SPELLINGS,
    MAP_SPELLINGS,
    NodeCpus,
    Policy,
    cpu_list,
    mapping_of,
    place,
    rank_nodes,
    resolve,
)
from mnp.spec.jobspec import CHOICES

pytestmark = pytest.mark.noroot


def test_spellings_agree_everywhere() -> None:
    assert set(CHOICES["bind_to"]) == set(BIND_SPELLINGS) == set(_BIND)
    assert set(CHOICES["map_by"]) == set(MAP_SPELLINGS) == set(_MAP)


@pytest.mark.parametrize("counts,how,expect", [
    ([2, 2], "block", [[0, 1], [2, 3]]),
    ([2, 2], "cyclic", [[0, 2], [1, 3]]),
    ([3, 2], "cyclic", [[0, 2, 4], [1, 3]]),
    ([1, 3], "cyclic", [[0], [1, 2, 3]]),
    ([2, 2, 2], "cyclic", [[0, 3], [1, 4], [2, 5]]),
    ([4], "cyclic", [[0, 1, 2, 3]]),
    ([1, 1, 1], "block", [[0], [1], [2]]),
])
def test_rank_nodes(counts: list[int], how: str, expect: list[list[int]]) -> None:
    assert rank_nodes(counts, how) == expect


@pytest.mark.parametrize("counts", [[2, 2, 2, 2], [2, 2, 1, 3, 3], [1], [5, 1], [1, 1, 4, 4, 1]])
def test_block_mapping_is_the_old_one(counts: list[int]) -> None:
    assert mapping_of(rank_nodes(counts, "block")) == process_mapping(counts)


def _expand(mapping: str, size: int) -> list[int]:
    """MPICH's reading of a PMI_process_mapping: each (first, nodes, ppn) block, in order."""
    out: list[int] = []
    for block in mapping.removeprefix("(vector,").removesuffix(")").split("),("):
        first, nodes, ppn = (int(x) for x in block.strip("()").split(","))
        for node in range(first, first + nodes):
            out += [node] * ppn
    assert len(out) == size
    return out


@pytest.mark.parametrize("counts", [[2, 2], [3, 2], [1, 3], [2, 2, 2], [4, 4, 4, 4], [1, 1]])
@pytest.mark.parametrize("how", ["block", "cyclic"])
def test_mapping_says_where_every_rank_is(counts: list[int], how: str) -> None:
    layout = rank_nodes(counts, how)
    where = _expand(mapping_of(layout), sum(counts))
    assert all(where[r] == i for i, rs in enumerate(layout) for r in rs)
    if how == "cyclic" and counts == [2, 2]:
        assert mapping_of(layout) == "(vector,(0,2,1),(0,2,1))"


def _node(cpus: range | list[int], per_package: int = 0, machine: str | None = None) -> NodeCpus:
    """A node on ``cpus``, one core each, ``per_package`` cores a package (0: one package)."""
    cores = {c: ((c // per_package) if per_package else 0, c) for c in cpus}
    return NodeCpus(tuple(cpus), cores, machine)


def _cpus(p: object, ranks: list[int]) -> list[list[int] | None]:
    out = []
    for r in ranks:
        c = p.cpus[r]  # type: ignore[attr-defined]
        out.append(list(c) if c is not None else None)
    return out


def test_core_block_within_one_node() -> None:
    p = place(Policy("core"), [_node(range(4))], [[0, 1, 2, 3]])
    assert _cpus(p, [0, 1, 2, 3]) == [[0], [1], [2], [3]] and not p.wrapped


def test_core_cyclic_alternates_sockets() -> None:
    p = place(Policy("core", within="cyclic"), [_node(range(8), per_package=4)], [[0, 1, 2, 3]])
    assert _cpus(p, [0, 1, 2, 3]) == [[0], [4], [1], [5]]


def test_socket_binding_gives_the_package_within_the_node() -> None:
    node = _node([2, 3, 4, 5, 6], per_package=4)  # package 0: 2, 3; package 1: 4-6
    block = place(Policy("socket", within="block"), [node], [[0, 1, 2]])
    assert _cpus(block, [0, 1, 2]) == [[2, 3], [2, 3], [4, 5, 6]]
    cyclic = place(Policy("socket", within="cyclic"), [node], [[0, 1, 2]])
    assert _cpus(cyclic, [0, 1, 2]) == [[2, 3], [4, 5, 6], [2, 3]]


def test_none_binds_nothing() -> None:
    p = place(Policy("none"), [_node(range(4))], [[0, 1]])
    assert _cpus(p, [0, 1]) == [None, None] and not p.bound


def test_more_ranks_than_cores_wrap_and_warn_once() -> None:
    p = place(Policy("core"), [_node([0]), _node([1])], [[0, 1, 2], [3, 4]])
    assert _cpus(p, [0, 1, 2, 3, 4]) == [[0], [0], [0], [1], [1]]
    assert len(p.wrapped) == 2 and p.warning is not None and p.warning.count("\n") == 0
    assert "(and 1 more)" in p.warning and "3 rank(s) on 1 core(s) of node 0" in p.warning


def test_wrap_goes_round_robin() -> None:
    p = place(Policy("core"), [_node(range(3))], [[0, 1, 2, 3, 4, 5, 6]])
    assert _cpus(p, list(range(7))) == [[0], [1], [2], [0], [1], [2], [0]]


def test_hyperthreads_stay_together_for_core() -> None:
    node = NodeCpus((0, 1, 2, 3), {0: (0, 0), 1: (0, 1), 2: (0, 0), 3: (0, 1)})  # 2 cores x 2 threads
    p = place(Policy("core"), [node], [[0, 1]])
    assert _cpus(p, [0, 1]) == [[0, 2], [1, 3]]


def test_unknown_topology_is_a_core_per_cpu() -> None:
    p = place(Policy("core"), [NodeCpus((5, 7))], [[0, 1, 2]])
    assert _cpus(p, [0, 1, 2]) == [[5], [7], [5]]


def test_nodes_that_own_cores_stay_in_them() -> None:
    """Local nodes that each own distinct cores of one machine: every rank within its own node's set."""
    nodes = [_node([0, 1], machine="m"), _node([2, 3], machine="m"), _node([4, 5], machine="m")]
    p = place(Policy("core"), nodes, [[0, 1], [2, 3], [4, 5]])
    assert _cpus(p, list(range(6))) == [[0], [1], [2], [3], [4], [5]] and not p.shared and not p.wrapped


def test_nodes_sharing_every_cpu_are_spread_over_them() -> None:
    """More nodes than CPUs: each node got every CPU; ranks of different nodes must not all take CPU 0."""
    nodes = [_node([0, 1], machine="m") for _ in range(3)]
    p = place(Policy("core"), nodes, [[0], [1], [2]])
    assert _cpus(p, [0, 1, 2]) == [[0], [1], [0]]
    assert p.shared == [[0, 1, 2]] and p.warning is not None and "one machine" in p.warning


def test_same_cpus_on_different_machines_do_not_meet() -> None:
    nodes = [_node([0, 1], machine="a"), _node([0, 1], machine="b"), _node([0, 1])]
    p = place(Policy("core"), nodes, [[0, 1], [2, 3], [4, 5]])
    assert _cpus(p, list(range(6))) == [[0], [1], [0], [1], [0], [1]] and not p.shared and not p.wrapped


def test_shared_group_counts_ranks_of_every_node() -> None:
    nodes = [_node([0, 1, 2, 3], machine="m"), _node([2, 3], machine="m")]
    p = place(Policy("core"), nodes, [[0, 1], [2, 3]])
    assert _cpus(p, [0, 1, 2, 3]) == [[0], [1], [2], [3]] and p.shared == [[0, 1]]


def test_empty_node_set_binds_nothing() -> None:
    p = place(Policy("core"), [NodeCpus(())], [[0, 1]])
    assert _cpus(p, [0, 1]) == [None, None]


@pytest.mark.parametrize("family,size,bind,within", [("openmpi", 1, "core", "block"), ("openmpi", 2, "core", "block"),
                                                     ("openmpi", 3, "socket", "cyclic"), ("mpich", 8, "none", "block"),
                                                     ("impi", 2, "none", "block")])
def test_auto_is_what_the_mpi_does(family: str, size: int, bind: str, within: str) -> None:
    p = resolve("auto", "auto", family, size)
    assert (p.bind, p.nodes, p.within) == (bind, "block", within)
    assert p.left_to_mpi == (family == "impi")


@pytest.mark.parametrize("spelling,nodes,within", [("slot", "block", "block"), ("core", "block", "block"),
                                                   ("socket", "block", "cyclic"), ("numa", "block", "cyclic"),
                                                   ("node", "cyclic", "block"), ("block", "block", "cyclic"),
                                                   ("cyclic", "cyclic", "cyclic"), ("cyclic:block", "cyclic", "block")])
def test_map_spellings(spelling: str, nodes: str, within: str) -> None:
    p = resolve("core", spelling, "mpich", 4)
    assert (p.nodes, p.within) == (nodes, within)


@pytest.mark.parametrize("spelling,bind", [("cores", "core"), ("sockets", "socket"), ("numa", "socket"),
                                           ("package", "socket"), ("none", "none")])
def test_bind_spellings(spelling: str, bind: str) -> None:
    assert resolve(spelling, "auto", "openmpi", 8).bind == bind


def test_openmpi_default_leaves_an_oversubscribed_node_unbound() -> None:
    policy = resolve("auto", "auto", "openmpi", 2)
    p = place(policy, [_node([0])], [[0, 1]])
    assert _cpus(p, [0, 1]) == [None, None] and 0 in p.unbound_nodes and not p.wrapped


def _facts(cpus: str, boot: str = "b") -> dict[str, object]:
    return {"cpu_list": cpus, "cores": [[c, 0, c] for c in range(8)], "boot_id": boot}


def test_decision_says_who_binds_and_lists_ranks() -> None:
    nodes = node_cpus([_facts("0"), _facts("1")])
    assert one_machine(nodes) and nodes[0].cpus == (0,) and nodes[1].cores[1] == (0, 1)
    mnp = decide_binding("core", "cyclic", "mpich", "pmi", nodes, [[0, 2], [1, 3]], shared=True)
    assert mnp.by == "mnp" and mnp.bind_cpus == {0: (0,), 2: (0,), 1: (1,), 3: (1,)}
    assert mnp.lines == ["node 0 (CPUs 0): rank 0->0 2->0", "node 1 (CPUs 1): rank 1->1 3->1"]
    assert "sched_setaffinity" in mnp.why and "binding is off" in mnp.why
    assert mnp.to_info()["ranks"] == {"0": "0", "1": "1", "2": "0", "3": "1"}
    wrapper = decide_binding("core", "auto", "openmpi", "mpirun", nodes, [[0], [1]], shared=True)
    assert wrapper.by == "mnp" and "taskset" in wrapper.why
    apart = node_cpus([_facts("0-3", "x"), _facts("0-3", "y")])
    mpi = decide_binding("auto", "auto", "openmpi", "mpirun", apart, [[0], [1]], shared=False)
    assert mpi.by == "mpi" and not mpi.bind_cpus and "Open MPI's launcher" in mpi.why
    assert mpi.lines == ["node 0 (CPUs 0-3): rank 0->0", "node 1 (CPUs 0-3): rank 1->0"]  # what it should choose
    hydra = decide_binding("auto", "auto", "mpich", "pmi", apart, [[0], [1]], shared=False)
    assert hydra.by == "none" and "Hydra's default" in hydra.why


def test_cpu_list() -> None:
    assert cpu_list([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8" and cpu_list([]) == ""


@pytest.mark.parametrize("family,major,over,policy,overload,expect", [
    ("openmpi", 4, "block", None, False, ["--map-by", "slot"]),
    ("openmpi", 5, "cyclic", None, False, ["--map-by", "node"]),
    ("openmpi", 4, "block", Policy("socket", within="cyclic"), False, ["--map-by", "socket", "--bind-to", "socket"]),
    ("openmpi", 5, "block", Policy("socket", within="cyclic"), False, ["--map-by", "package", "--bind-to", "package"]),
    ("openmpi", 5, "block", Policy("core"), True, ["--map-by", "slot", "--bind-to", "core:overload-allowed"]),
    ("openmpi", 5, "cyclic", Policy("none"), False, ["--map-by", "node", "--bind-to", "none"]),
    ("mpich", None, "block", None, False, []),
    ("mpich", None, "block", Policy("core"), False, ["-bind-to", "core", "-map-by", "core"]),
    ("mpich", None, "block", Policy("socket", within="cyclic"), False, ["-bind-to", "socket", "-map-by", "socket"]),
])
def test_launcher_flags(family: str, major: int | None, over: str, policy: Policy | None, overload: bool,
                        expect: list[str]) -> None:
    from mnp.launch.mpirun import binding_flags

    assert binding_flags(family, major, over, policy, overload) == expect


def test_launchers_refuse_what_they_cannot_lay_out() -> None:
    from mnp.errors import SpecError
    from mnp.launch.mpirun import binding_flags, mpirun_command
    from mnp.plan import JobPlan, NodePlan

    with pytest.raises(SpecError) as e:
        binding_flags("mpich", None, "cyclic", None)
    assert e.value.field == "map_by" and "launcher: pmi" in e.value.problem
    nodes = [NodePlan(0, "n0", "10.0.0.1", ["a"], {}, [0, 2]), NodePlan(1, "n1", "10.0.0.2", ["a"], {}, [1])]
    with pytest.raises(SpecError) as e:
        mpirun_command("openmpi", JobPlan("j", "k", 0, nodes, "m"), over_nodes="cyclic")
    assert e.value.field == "map_by" and "same number of ranks" in e.value.problem


def test_wrapper_env_names_each_bound_rank() -> None:
    from mnp.launch.mpirun import mpirun_command
    from mnp.plan import JobPlan, NodePlan

    nodes = [NodePlan(0, "n0", "10.0.0.1", ["a"], {}, [0, 1]), NodePlan(1, "n1", "10.0.0.2", ["a"], {}, [2, 3])]
    lc = mpirun_command("mpich", JobPlan("j", "k", 0, nodes, "m"), bind_cpus={0: (0,), 1: (1, 3), 3: (5,)})
    assert lc.node_env(nodes[0]) == {"MNP_CPUS_0": "0", "MNP_CPUS_1": "1,3"}
    assert lc.node_env(nodes[1]) == {"MNP_CPUS_3": "5"}
    assert "taskset -c" in " ".join(lc.argv) and "-bind-to" not in lc.argv


def test_who_is_given_launcher_flags() -> None:
    apart = node_cpus([_facts("0-3", "x"), _facts("0-3", "y")])
    together = node_cpus([_facts("0", "m"), _facts("1", "m")])
    assert decide_binding("none", "auto", "openmpi", "mpirun", apart, [[0], [1]], shared=False).launcher_binds
    assert not decide_binding("none", "auto", "openmpi", "mpirun", together, [[0], [1]], shared=True).launcher_binds
    assert not decide_binding("core", "auto", "openmpi", "mpirun", together, [[0], [1]], shared=True).launcher_binds
    assert not decide_binding("auto", "auto", "impi", "pmi", apart, [[0], [1]], shared=False).launcher_binds
