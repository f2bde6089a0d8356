"""Dependencies, array scheduling, the stuck-in-transit clock and the records they use: no processes, no root."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from mnp.control import messages as m
from mnp.coordinator.actions import Stuck, Transition
from mnp.coordinator.engine import JobEngine, Timing
from mnp.coordinator.pending import labelled, resolve_dependencies
from mnp.coordinator.schedule import ArrayScheduler, gate, needs_of
from mnp.coordinator.transit import TransitWatch, make_alert
from mnp.errors import SpecError, UsageError
from mnp.records import Records, state_times
from mnp.spec.depends import Dependency, parse_dependency
from mnp.spec.model import spec_from_dict

pytestmark = pytest.mark.noroot


@pytest.mark.parametrize("text, dep", [
    ("abc", Dependency("abc")),
    ("abc:n_to_n", Dependency("abc", "N_TO_N")),
    ("train:SEQUENTIAL", Dependency("train", "SEQUENTIAL")),
    ("SEQUENTIAL", Dependency("", "SEQUENTIAL")),
    (":sequential", Dependency("", "SEQUENTIAL")),
    ("abc:3", Dependency("abc:3")),  # one child of an array: a plain dependency
])
def test_parse_dependency(text: str, dep: Dependency) -> None:
    assert parse_dependency(text) == dep


@pytest.mark.parametrize("text", ["", "  ", ":N_TO_N"])
def test_parse_dependency_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_dependency(text)


def test_job_file_depends_on_is_checked() -> None:
    spec = spec_from_dict({"command": "true", "depends_on": ["a", "b:N_TO_N"], "array": {"size": 4},
                           "transit_timeout": 900, "on_stuck": "fail"})
    assert spec.array is not None and spec.array.size == 4 and spec.array.max_concurrency is None
    assert spec.transit_timeout == 900 and spec.on_stuck == "fail"
    with pytest.raises(SpecError, match=r"depends_on\[1\]"):
        spec_from_dict({"command": "true", "depends_on": ["a", ":N_TO_N"]})
    with pytest.raises(SpecError, match="array.size"):
        spec_from_dict({"command": "true", "array": {"size": 0}})
    with pytest.raises(SpecError, match="on_stuck"):
        spec_from_dict({"command": "true", "on_stuck": "panic"})


def test_gate_waits_goes_and_fails_naming_the_dependency() -> None:
    states = {"a": "RUNNING", "b": "SUCCEEDED"}
    g = gate(["a", "b"], states.get)
    assert not g.go and g.failed is None and g.waiting_for == ["dependency a (RUNNING)"]
    states["a"] = "SUCCEEDED"
    assert gate(["a", "b"], states.get).go
    states["b"] = "CANCELLED"
    assert gate(["a", "b"], states.get).failed == "dependency b CANCELLED"
    assert gate(["zz"], states.get).failed == "dependency zz does not exist"


def test_needs_of_each_kind() -> None:
    deps = [Dependency("x"), Dependency("y", "N_TO_N"), Dependency("", "SEQUENTIAL")]
    assert needs_of(deps, "p", 0) == ["x", "y:0"]
    assert needs_of(deps, "p", 3) == ["x", "y:3", "p:2"]


def _run_to_end(s: ArrayScheduler, fail: set[int] = frozenset(), others=None) -> list[list[int]]:  # type: ignore[assignment, no-untyped-def]
    """Drive the scheduler: each round, what it starts ends (in ``fail``: FAILED). Returns the rounds' starts."""
    rounds = []
    while not s.done:
        starts, _ = s.decide((others or {}).get)
        assert len(s.running) + len(starts) <= s.limit
        for i, slot in starts:
            assert slot not in s.running.values()
            s.started(i, slot)
        rounds.append(sorted(i for i, _ in starts))
        for i in list(s.running):
            s.finished(i, "FAILED" if i in fail else "SUCCEEDED")
        if not starts and not s.running and s.waiting:
            break
    return rounds


def test_array_at_most_k_at_once_in_index_order() -> None:
    s = ArrayScheduler("p", 6, max_concurrency=2)
    assert _run_to_end(s) == [[0, 1], [2, 3], [4, 5]]
    assert s.states == {i: "SUCCEEDED" for i in range(6)}


def test_array_slots_cap_concurrency_and_are_never_shared() -> None:
    s = ArrayScheduler("p", 5, max_concurrency=4, slots=2)
    assert s.limit == 2
    starts, _ = s.decide({}.get)
    assert starts == [(0, 0), (1, 1)]
    for i, slot in starts:
        s.started(i, slot)
    s.finished(1, "SUCCEEDED")
    assert s.decide({}.get)[0] == [(2, 1)]  # the slot child 1 freed, not child 0's
    assert s.blocked[3] == ["a free slot"]


def test_sequential_runs_one_after_another_and_a_failure_fails_the_rest() -> None:
    s = ArrayScheduler("p", 4, deps=[Dependency("", "SEQUENTIAL")])
    starts, _ = s.decide({}.get)
    assert starts == [(0, 0)] and s.blocked[1] == ["dependency p:0 (PENDING)"]
    s.started(0, 0)
    s.finished(0, "SUCCEEDED")
    starts, _ = s.decide({}.get)
    assert starts == [(1, 0)]
    s.started(1, 0)
    s.finished(1, "FAILED")
    starts, fails = s.decide({}.get)
    assert starts == [] and fails == [(2, "dependency p:1 FAILED"), (3, "dependency p:2 FAILED")] and s.done


def test_n_to_n_child_waits_for_its_own_partner() -> None:
    other = {"q:0": "RUNNING", "q:1": "SUCCEEDED", "q:2": "FAILED"}
    s = ArrayScheduler("p", 3, deps=[Dependency("q", "N_TO_N")])
    starts, fails = s.decide(other.get)
    assert starts == [(1, 0)] and fails == [(2, "dependency q:2 FAILED")]
    assert s.blocked == {0: ["dependency q:0 (RUNNING)"]}


def test_cancel_rest_marks_the_unstarted() -> None:
    s = ArrayScheduler("p", 4, max_concurrency=1)
    (i, slot), = s.decide({}.get)[0]
    s.started(i, slot)
    assert s.cancel_rest() == [1, 2, 3] and not s.done
    s.finished(0, "CANCELLED")
    assert s.done and s.states == {0: "CANCELLED", 1: "CANCELLED", 2: "CANCELLED", 3: "CANCELLED"}


def test_transit_watch_fires_once_and_not_after_running() -> None:
    w = TransitWatch(10.0, since=100.0, since_wall=1e9)
    assert not w.due(109.9)
    assert w.due(110.1) and not w.due(200.0)
    quiet = TransitWatch(10.0, since=100.0, since_wall=1e9)
    quiet.running()
    assert not quiet.due(500.0)
    assert not TransitWatch(None, 0.0, 0.0).due(1e9)
    a = make_alert(TransitWatch(900, 0.0, 1e9, "fail"), 901.0, "j1", "train", "RUNNABLE", ["node 2 to join"])
    assert a["waited_s"] == 901.0 and a["waiting_for"] == ["node 2 to join"] and a["action"] == "fail"
    assert "stuck in RUNNABLE for 901s" in a["line"] and "node 2 to join" in a["line"]
    json.dumps(a)  # what --notify gets


def test_engine_stuck_in_runnable_names_the_missing_node() -> None:
    e = JobEngine(3, Timing(join_timeout_s=100), now=0.0, transit=TransitWatch(5.0, 0.0, 0.0))
    e.on_message(0, m.Hello("n0", 1, 1), None, 1.0)
    e.on_message(1, m.Hello("n1", 1, 2), None, 1.0)
    e.why_missing[2] = "its container has not started"
    assert [a for a in e.on_tick(4.0, {}) if isinstance(a, Stuck)] == []
    stuck = [a for a in e.on_tick(5.5, {}) if isinstance(a, Stuck)]
    assert stuck == [Stuck("RUNNABLE", ["node 2 to join (its container has not started)"])]
    assert [a for a in e.on_tick(9.0, {}) if isinstance(a, Stuck)] == []  # once
    assert e.failure is None  # on_stuck is the driver's to carry out


def test_engine_not_stuck_once_running() -> None:
    from mnp.launch.backends import DirectPmi
    from mnp.plan import JobPlan, NodePlan

    e = JobEngine(1, Timing(), now=0.0, transit=TransitWatch(5.0, 0.0, 0.0))
    assert e.on_message(0, m.Hello("n0", 1, 1), None, 0.1) == [Transition("STARTING")]
    b = DirectPmi()
    plan = JobPlan("job", "kvs", 0, [NodePlan(0, "n0", "10.0.0.1", ["app"], {}, [0])], "(vector,(0,1,1))")
    e.start(b, b.starts(plan, "/w"), {}, 0.2)
    assert e.on_message(0, m.Started({0: 9}), None, 0.3) == [Transition("RUNNING")]
    assert not any(isinstance(a, Stuck) for a in e.on_tick(60.0, {}))


def test_state_times_from_transitions() -> None:
    tr = [("SUBMITTED", 0.0, None), ("PENDING", 1.0, None), ("RUNNABLE", 4.0, None), ("RUNNING", 5.0, None),
          ("RUNNABLE", 7.0, "retry"), ("RUNNING", 8.0, None), ("SUCCEEDED", 10.0, None)]
    assert state_times(tr) == {"SUBMITTED": 1.0, "PENDING": 3.0, "RUNNABLE": 2.0, "RUNNING": 4.0}
    assert state_times(tr[:3], now=6.0) == {"SUBMITTED": 1.0, "PENDING": 3.0, "RUNNABLE": 2.0}


def test_records_children_alerts_and_lookup(tmp_path: Path) -> None:
    r = Records(tmp_path)
    r.create("abc1234567", "arr", 1, ["true"], None)
    r.update("abc1234567", info={"array": {"size": 2}})
    for i in range(2):
        r.create(f"abc1234567:{i}", "arr", 1, ["true"], None, parent="abc1234567", array_index=i)
    r.transition("abc1234567:1", "PENDING", "waiting")
    assert [j.id for j in r.list()] == ["abc1234567"]  # children are under their parent
    assert [k.id for k in r.children("abc1234567")] == ["abc1234567:0", "abc1234567:1"]
    assert r.get("abc:1").id == "abc1234567:1" and r.get("arr:0").array_index == 0
    assert r.get("abc").id == "abc1234567"  # a prefix never picks a child
    with pytest.raises(UsageError, match="no array child 5"):
        r.get("abc:5")
    assert r.state_of("abc1234567:1") == "PENDING" and r.state_of("nope") is None
    r.alert("abc1234567:1", {"state": "PENDING", "waited_s": 3.0, "line": "stuck"})
    stuck = r.list(stuck=True)
    assert [j.id for j in stuck] == ["abc1234567:1"] and stuck[0].info["alerts"][0]["line"] == "stuck"
    assert r.get("abc:1").to_json()["stuck"] is True and r.get("abc").to_json()["stuck"] is False
    with pytest.raises(UsageError, match="is not an array job"):
        resolve_dependencies(r, labelled([], ["abc:0:N_TO_N"]), 2)
    with pytest.raises(UsageError, match="has 2 children, this one 3"):
        resolve_dependencies(r, labelled([], ["arr:N_TO_N"]), 3)
    with pytest.raises(UsageError, match=r"^--depends-on 'ghost': no such job"):
        resolve_dependencies(r, labelled([], ["ghost"]), None)
    with pytest.raises(UsageError, match=r"^depends_on\[1\] 'ghost': no such job"):  # the job file's field, named
        resolve_dependencies(r, labelled(["arr", "ghost"], []), None)
    with pytest.raises(UsageError, match="is for array jobs"):
        resolve_dependencies(r, labelled([], ["arr:SEQUENTIAL"]), None)
    assert resolve_dependencies(r, labelled(["arr:N_TO_N"], ["SEQUENTIAL"]), 2) == [Dependency("abc1234567", "N_TO_N"),
                                                                       Dependency("", "SEQUENTIAL")]


def test_database_from_before_arrays_stays_readable(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "mnp.db")
    db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, name TEXT NOT NULL, state TEXT NOT NULL, created REAL NOT NULL,"
               " updated REAL NOT NULL, num_nodes INTEGER NOT NULL, command TEXT NOT NULL, spec_path TEXT,"
               " dir TEXT NOT NULL, nodes TEXT NOT NULL DEFAULT '[]', exit_code INTEGER, reason TEXT, wall_s REAL,"
               " info TEXT NOT NULL DEFAULT '{}', owner_host TEXT, owner_pid INTEGER)")
    db.execute("CREATE TABLE transitions (job_id TEXT NOT NULL, state TEXT NOT NULL, ts REAL NOT NULL, reason TEXT)")
    db.execute("INSERT INTO jobs (id, name, state, created, updated, num_nodes, command, dir) "
               "VALUES ('old0000000', 'old', 'SUCCEEDED', 1, 2, 1, '[\"x\"]', '/tmp')")
    db.execute("INSERT INTO transitions VALUES ('old0000000', 'SUBMITTED', 1, NULL)")
    db.execute("INSERT INTO transitions VALUES ('old0000000', 'SUCCEEDED', 2, NULL)")
    db.commit()
    db.close()
    r = Records(tmp_path)
    j = r.get("old")
    assert j.state == "SUCCEEDED" and j.parent is None and j.alerts == [] and r.children(j.id) == []
    assert j.to_json()["state_times"] == {"SUBMITTED": 1.0}
    assert [x.id for x in r.list()] == ["old0000000"] and r.list(stuck=True) == []
