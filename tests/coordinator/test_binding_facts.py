"""A node's hello is its agent's word: facts of the wrong shape or size cost nothing and stop nothing."""

from __future__ import annotations

import pytest

from mnp.coordinator.binding import node_cpus
from mnp.fabric.decide import MAX_CPUS, node_facts, parse_cpu_list

pytestmark = pytest.mark.noroot


def test_real_facts_are_read() -> None:
    facts = node_facts(False)
    (node,) = node_cpus([facts])
    assert node.cpus and set(node.cpus) == parse_cpu_list(str(facts["cpu_list"]))
    assert not facts["cores"] or set(node.cores) <= set(node.cpus)


@pytest.mark.parametrize("cores", [5, "0,0,0", [[0, 0]], [[0, 0, "x"]], [[0, 0, -1]], [[True, 0, 0]],
                                   [[0, 0, MAX_CPUS]], {"a": 1}, [[0, 0, 0]] * (MAX_CPUS + 1)])
def test_forged_cores_are_ignored(cores: object) -> None:
    (node,) = node_cpus([{"cores": cores, "cpu_list": "0-1", "boot_id": "b"}])
    assert node.cores == {} and node.cpus == (0, 1)


def test_a_huge_cpu_list_is_not_expanded() -> None:
    assert parse_cpu_list("0-4000000000") == set()
    assert parse_cpu_list("0-3," + "9" * 5000 + ",7") == {0, 1, 2, 3, 7}
    assert parse_cpu_list(f"0-{MAX_CPUS - 1}") == set(range(MAX_CPUS))
    (node,) = node_cpus([{"cpu_list": "0-4000000000,5", "cores": None}])
    assert node.cpus == (5,)
