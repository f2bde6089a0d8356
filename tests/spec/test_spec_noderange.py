"""Node index sets (RangeSet), targetNodes ranges (NodeRange), and ranges laid out on nodes (range_owners)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mnp.errors import SpecError
from mnp.spec.model import spec_from_dict
from mnp.spec.noderange import NodeRange, RangeSet
from mnp.spec.resolve import range_owners, resolve_nodes

pytestmark = pytest.mark.noroot

# --- RangeSet ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("items, folded", [
    ([], ""),
    ([0], "0"),
    ([0, 1, 2, 3], "0-3"),
    ([3, 1, 2, 0], "0-3"),
    ([0, 1, 2, 3, 5], "0-3,5"),
    ([5, 0, 1, 1, 2, 3], "0-3,5"),
    ([0, 2, 4], "0,2,4"),
    ([7, 8, 10, 11, 12, 20], "7-8,10-12,20"),
    ([999], "999"),
    (range(1000), "0-999"),
])
def test_fold(items: list[int], folded: str) -> None:
    rs = RangeSet(items)
    assert rs.fold() == folded == str(rs)
    assert RangeSet.parse(folded) == rs
    assert list(rs) == sorted(set(items))
    assert len(rs) == len(set(items))


@pytest.mark.parametrize("text, want", [
    ("", []),
    ("  ", []),
    ("4", [4]),
    ("0-2", [0, 1, 2]),
    ("0-2,5", [0, 1, 2, 5]),
    (" 1 , 3-4 ", [1, 3, 4]),
    ("3,1", [1, 3]),
    ("1-1", [1]),
    ("0-2,1-3", [0, 1, 2, 3]),
])
def test_parse(text: str, want: list[int]) -> None:
    assert list(RangeSet.parse(text)) == want


@pytest.mark.parametrize("text, problem", [
    ("a", "'a' is not N or N-M"),
    ("1-", "'1-' is not N or N-M"),
    ("-1", "'-1' is not N or N-M"),
    ("1,,2", "'' is not N or N-M"),
    ("3-1", "'3-1' ends before it starts"),
    ("1:3", "'1:3' is not N or N-M"),
    ("0-99999999", "goes past"),
    ("\u0663", "is not N or N-M"),
])
def test_parse_errors(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace("[", r"\[")):
        RangeSet.parse(text)


@pytest.mark.parametrize("bad", [-1, 1.5, "1", True, None])
def test_only_node_indices(bad: Any) -> None:
    with pytest.raises(ValueError, match="not a node index"):
        RangeSet([0, bad])


def test_set_api() -> None:
    a, b = RangeSet.parse("0-3"), RangeSet.parse("2-5")
    assert 2 in a and 4 not in a and "2" not in a
    assert a | b == RangeSet.parse("0-5") and isinstance(a | b, RangeSet)
    assert a & b == RangeSet.parse("2-3") and isinstance(a & b, RangeSet)
    assert a - b == RangeSet.parse("0-1") and isinstance(a - b, RangeSet)
    assert a ^ b == RangeSet.parse("0-1,4-5") and isinstance(a ^ b, RangeSet)
    assert a.union(b, [9]) == RangeSet.parse("0-5,9") and isinstance(a.union(b), RangeSet)
    assert a.intersection(b) == RangeSet([2, 3]) and a.difference(b, [0]) == RangeSet([1])
    assert a.symmetric_difference(b) == a ^ b
    same = RangeSet.parse("0,1-3")
    assert RangeSet([1, 2]) <= a and RangeSet([1, 2]) < a and not same < a and same <= a
    assert RangeSet([1]).issubset(a) and a.issuperset([0, 3]) and not a.issuperset(b)
    assert a.isdisjoint(RangeSet([7])) and not a.isdisjoint(b)
    assert a == {0, 1, 2, 3} and a != {0, 1} and a != "0-3"
    assert not RangeSet() and RangeSet([0])
    assert hash(RangeSet([1, 2])) == hash(RangeSet([2, 1]))
    assert {RangeSet([1, 2]): "x"}[RangeSet.parse("1-2")] == "x"
    assert repr(RangeSet([0, 1, 5])) == "RangeSet('0-1,5')"
    assert RangeSet.span(2, 5) == RangeSet([2, 3, 4])
    assert RangeSet.parse("0-2,4").runs() == [(0, 2), (4, 4)]


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(0, 300)), st.sets(st.integers(0, 300)))
def test_matches_builtin_sets(a: set[int], b: set[int]) -> None:
    ra, rb = RangeSet(a), RangeSet(b)
    assert RangeSet.parse(ra.fold()) == ra
    assert list(ra) == sorted(a)
    assert set(ra | rb) == a | b and set(ra & rb) == a & b and set(ra - rb) == a - b
    assert (ra <= rb) == (a <= b) and (ra == rb) == (a == b)
    assert all("-" not in part or int(part.split("-")[0]) < int(part.split("-")[1]) for part in ra.fold().split(","))


# --- NodeRange (targetNodes) ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, n, want", [
    ("0:", 4, "0-3"),
    (":2", 4, "0-2"),
    ("1:3", 4, "1-3"),
    ("0", 4, "0"),
    ("3:", 4, "3"),
    (" 1 : 2 ", 4, "1-2"),
    (2, 3, "2"),
    ("0:0", 1, "0"),
    (":", None, None),
])
def test_node_range_indices(text: str | int, n: int | None, want: str | None) -> None:
    if n is None:
        with pytest.raises(ValueError):
            NodeRange.parse(text)
        return
    got = NodeRange.parse(text).nodes(n)
    assert isinstance(got, RangeSet) and got.fold() == want
    assert list(NodeRange.parse(text).indices(n)) == list(got)


@pytest.mark.parametrize("text, problem", [
    ("", "is not a node range"),
    (":", "is not a node range"),
    ("a", "is not a node range"),
    ("1:2:3", "is not a node range"),
    ("-1", "is not a node range"),
    ("1-3", "is not a node range"),
    ("2:1", "ends before it starts"),
    ("1\n", "is not a node range"),
    ("\u0661:\u0662", "is not a node range"),
    ("99999999", "past 1000000"),
    ("0:" + "9" * 5000, "past 1000000"),
])
def test_bad_node_range(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        NodeRange.parse(text)


def test_node_range_past_last_node() -> None:
    with pytest.raises(ValueError, match=r"'2:5' names nodes past the last node \(3\)"):
        NodeRange.parse("2:5").indices(4)


def test_node_range_is_immutable_and_compares_by_ends() -> None:
    r = NodeRange.parse(" 1:3 ")
    assert r == NodeRange.parse("1:3") and hash(r) == hash(NodeRange.parse("1:3")) and str(r) == "1:3"
    assert NodeRange.parse("0:") != NodeRange.parse("0:3")
    with pytest.raises(AttributeError):
        r.start = 0  # type: ignore[misc]


# --- ranges laid out on nodes -----------------------------------------------------------------------------------

def _spec(nodes: int, *targets: str) -> Any:
    return spec_from_dict({"command": "x", "nodes": nodes,
                           "node_ranges": [{"target_nodes": t} for t in targets]})


@pytest.mark.parametrize("nodes, targets, owners", [
    (3, [], [None, None, None]),
    (3, ["0:"], [0, 0, 0]),
    (4, ["0:", "0"], [1, 0, 0, 0]),
    (4, ["0", "1:"], [0, 1, 1, 1]),
    (6, ["0:", "1:4", "2:3", "5"], [0, 1, 2, 2, 1, 3]),
    (6, ["2:3", "1:4", "0:"], [2, 1, 0, 0, 1, 2]),
    (5, ["0:1", "2", "3:"], [0, 0, 1, 2, 2]),
])
def test_range_owners(nodes: int, targets: list[str], owners: list[int | None]) -> None:
    assert range_owners(_spec(nodes, *targets)) == owners


@pytest.mark.parametrize("nodes, targets, field, problem", [
    (4, ["0:2", "1:3"], "node_ranges[1].target_nodes", "1:3 overlaps node_ranges[0] (0:2) without being nested"),
    (4, ["1:3", "0:2"], "node_ranges[1].target_nodes", "0:2 overlaps node_ranges[0] (1:3) without being nested"),
    (4, ["0:", ":3"], "node_ranges[1].target_nodes", "names the same nodes as node_ranges[0]"),
    (4, ["0:1"], "node_ranges", "node(s) 2-3 are not covered by any range"),
    (6, ["0", "2", "4:"], "node_ranges", "node(s) 1,3 are not covered by any range"),
    (3, ["0:3"], "node_ranges[0].target_nodes", "names nodes past the last node (2)"),
    (8, ["0:", "0:3", "2:5"], "node_ranges[2].target_nodes", "overlaps node_ranges[1] (0:3)"),
])
def test_range_layout_errors(nodes: int, targets: list[str], field: str, problem: str) -> None:
    with pytest.raises(SpecError) as e:
        range_owners(_spec(nodes, *targets), "j.yaml")
    assert e.value.field == field and problem in e.value.problem


def _reference(nodes: int, spans: list[tuple[int, int]]) -> list[int | None] | None:
    """Brute force: None when the layout is invalid, else each node's innermost range."""
    sets = [set(range(a, b + 1)) for a, b in spans]
    for i, si in enumerate(sets):
        for _j, sj in enumerate(sets[:i]):
            if si & sj and not (si <= sj or sj <= si) or si == sj:
                return None
    if sets and set().union(*sets) != set(range(nodes)):
        return None
    return [min((i for i, s in enumerate(sets) if k in s), key=lambda i: len(sets[i]), default=None)
            for k in range(nodes)]


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 12).flatmap(lambda n: st.tuples(st.just(n), st.lists(
    st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).map(lambda t: (min(t), max(t))), max_size=6))))
def test_layout_matches_brute_force(case: tuple[int, list[tuple[int, int]]]) -> None:
    nodes, spans = case
    spec = _spec(nodes, *(f"{a}:{b}" for a, b in spans))
    want = _reference(nodes, spans)
    if want is None:
        with pytest.raises(SpecError):
            range_owners(spec)
    else:
        assert range_owners(spec) == want
        work = resolve_nodes(spec)
        assert [w.index for w in work] == list(range(nodes))


def test_many_ranges_are_checked_quickly() -> None:
    """A laminar family of 100 ranges on 1000 nodes (the limits) resolves, and a bad one is named."""
    targets = [f"{i * 10}:{i * 10 + 9}" for i in range(99)] + ["990:"]
    assert range_owners(_spec(1000, *targets))[995] == 99
    with pytest.raises(SpecError, match=r"node_ranges\[99\]"):
        range_owners(_spec(1000, *targets[:-1], "985:"))
