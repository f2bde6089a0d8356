"""Node ranges against node counts, rank assignment, and the environment contract."""

from __future__ import annotations

import pytest

from mnp.errors import SpecError
from mnp.plan import assign_ranks, resolve_nodes
from mnp.spec.model import spec_from_dict
from mnp.spec.noderange import NodeRange

pytestmark = pytest.mark.noroot


@pytest.mark.parametrize("text,n,expect", [("0:", 4, [0, 1, 2, 3]), (":2", 4, [0, 1, 2]), ("1:3", 4, [1, 2, 3]),
                                           ("0", 4, [0]), ("3:", 4, [3]), (" 1 : 2 ", 4, [1, 2]), (2, 3, [2])])
def test_node_range(text: str | int, n: int, expect: list[int]) -> None:
    assert list(NodeRange.parse(text).indices(n)) == expect


@pytest.mark.parametrize("text", ["", ":", "a", "1:2:3", "-1", "2:1", "1-3"])
def test_bad_node_range(text: str) -> None:
    with pytest.raises(ValueError):
        NodeRange.parse(text)


def test_range_past_last_node() -> None:
    with pytest.raises(ValueError, match="past the last node"):
        NodeRange.parse("2:5").indices(4)


def _spec(**kw: object):  # type: ignore[no-untyped-def]
    return spec_from_dict({"command": "main", **kw})


def test_nested_ranges_override_outer() -> None:
    s = _spec(nodes=6, env={"A": "top"}, node_ranges=[
        {"target_nodes": "0:", "command": "worker", "env": {"B": "outer"}},
        {"target_nodes": "2:3", "command": "special", "env": {"B": "inner"}, "ranks_per_node": 1},
        {"target_nodes": "5", "env": {"C": "c"}}])
    w = resolve_nodes(s)
    assert [x.command for x in w] == [["worker"], ["worker"], ["special"], ["special"], ["worker"], ["main"]]
    assert w[2].env == {"A": "top", "B": "inner"} and w[0].env == {"A": "top", "B": "outer"}
    assert w[5].env == {"A": "top", "C": "c"}
    assert [x.ranks_per_node for x in w] == [None, None, 1, 1, None, None]


def test_ranges_must_cover_every_node() -> None:
    with pytest.raises(SpecError) as e:
        resolve_nodes(_spec(nodes=5, node_ranges=[{"target_nodes": "0:1"}, {"target_nodes": "3"}]))
    assert e.value.field == "node_ranges" and "2,4" in e.value.problem


def test_partial_overlap_is_an_error() -> None:
    with pytest.raises(SpecError) as e:
        resolve_nodes(_spec(nodes=5, node_ranges=[{"target_nodes": "0:2"}, {"target_nodes": "2:4"}]))
    assert e.value.field == "node_ranges[1].target_nodes" and "nested" in e.value.problem


def test_no_command_anywhere_for_a_node() -> None:
    s = spec_from_dict({"nodes": 2, "node_ranges": [{"target_nodes": "0", "command": "a"},
                                                    {"target_nodes": "1"}]})
    with pytest.raises(SpecError) as e:
        resolve_nodes(s)
    assert e.value.field == "node_ranges[1].command"


def test_assign_ranks_blocks_cpus_and_env() -> None:
    s = _spec(nodes=3, main_node=2, env={"FI_PROVIDER": "user"},
              node_ranges=[{"target_nodes": "0:"}, {"target_nodes": "1", "ranks_per_node": 3}])
    w = resolve_nodes(s)
    p = assign_ranks("jid", w, cpus=[2, 8, 4], hostnames=["a", "b", "c"], addresses=["10.0.0.1", "10.0.0.2",
                     "10.0.0.3"], main_node=2, transport_env={"FI_PROVIDER": "tcp", "X": "1"})
    assert [n.ranks for n in p.nodes] == [[0, 1], [2, 3, 4], [5, 6, 7, 8]]
    assert p.size == 9 and p.mapping == "(vector,(0,1,2),(1,1,3),(2,1,4))"
    e0, e2 = p.nodes[0].env, p.nodes[2].env
    assert e0["FI_PROVIDER"] == "user" and e0["X"] == "1"  # the job's env wins over mnp's transport choice
    assert e0["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] == "10.0.0.3" == e0["MNP_MAIN_NODE_ADDR"]
    assert "AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS" not in e2
    assert p.where(4) == 1 and p.where(8) == 2
