"""The coordinator's rules for named processes: an essential process's end ends the job's work (a non-zero end
fails it), non-essential ends change nothing, the rest is stopped, output is kept per process, and a node may
only speak of its own processes. Scripted messages, no root."""

from __future__ import annotations

import pytest

from mnp.control import messages as m
from mnp.coordinator.actions import ProcessDone, Report, Send, ShowOutput
from mnp.coordinator.engine import JobEngine, Timing
from mnp.launch.backends import DirectPmi
from mnp.plan import JobPlan, NodePlan

pytestmark = pytest.mark.noroot


def _engine(ranks: bool = True) -> JobEngine:
    procs = [[m.ProcessStart("server", ["s"]), m.ProcessStart("tele", ["t"], essential=False)],
             [m.ProcessStart("explorer", ["e"])]]
    nodes = [NodePlan(i, f"node{i}", f"10.0.0.{i + 1}", ["app"] if ranks else [], {}, [i] if ranks else [],
                      procs[i]) for i in range(2)]
    e = JobEngine(2, Timing(grace_s=1.0), now=0.0)
    for i in range(2):
        e.on_message(i, m.Hello(f"node{i}", 2, 100 + i), None, 0.1)
    b = DirectPmi()
    e.start(b, b.starts(JobPlan("job", "kvs", 0, nodes, "(vector,(0,2,1))"), "/w"), {}, 0.2)
    return e


def _kills(out: list) -> list[int]:  # type: ignore[type-arg]
    return [a.node for a in out if isinstance(a, Send) and isinstance(a.msg, m.Kill)]


def test_processes_only_job_ends_when_an_essential_process_ends_and_stops_the_rest() -> None:
    e = _engine(ranks=False)
    assert _kills(e.on_tick(0.3, {})) == [] and e.phase == "RUNNING"  # no ranks: the processes are the work
    out = e.on_message(1, m.ProcessExit("explorer", 0), None, 0.5)
    assert out == [ProcessDone(1, "explorer")]
    assert _kills(e.on_tick(0.6, {})) == [0, 1] and e.phase == "STOPPING"
    e.on_message(0, m.ProcessExit("server", 143, "SIGTERM"), None, 0.7)  # stopped: not a failure
    assert e.phase == "STOPPING"
    e.on_message(0, m.ProcessExit("tele", 143, "SIGTERM"), None, 0.7)
    e.on_tick(0.8, {})
    assert e.phase == "DONE"
    assert e.outcome() == ("SUCCEEDED", 0, "node 1 process explorer (essential) exited with code 0")
    info = e.bye_info()["processes"]
    assert info["0"]["server"] == {"essential": True, "exit_code": 143, "started": True, "signal": "SIGTERM"}


def test_an_essential_failure_fails_the_job_a_non_essential_does_not() -> None:
    e = _engine()
    e.on_message(0, m.ProcessExit("tele", 3), None, 0.4)
    assert e.failure is None and e.ending is None
    e.on_message(0, m.ProcessExit("server", 1, None, "not started: dependency 'x' (SUCCESS) exited with code 2",
                                  started=False), None, 0.5)
    assert e.outcome() == ("FAILED", 1, "node 0 process server did not start: not started: dependency 'x' "
                                        "(SUCCESS) exited with code 2")
    e.on_message(0, m.Exit(0, 143, "SIGTERM"), None, 0.6)  # the ranks stopped after: the first failure stays
    assert e.outcome()[1] == 1


def test_ranks_done_stops_the_sidecars_without_failing() -> None:
    e = _engine()
    e.on_message(0, m.Exit(0, 0), None, 0.3)
    e.on_message(1, m.Exit(1, 0), None, 0.3)
    assert _kills(e.on_tick(0.4, {})) == [0, 1]
    for node, name in ((0, "server"), (0, "tele"), (1, "explorer")):
        e.on_message(node, m.ProcessExit(name, 143, "SIGTERM"), None, 0.5)
    e.on_tick(0.6, {})
    assert e.phase == "DONE" and e.outcome() == ("SUCCEEDED", 0, "every rank exited 0")


def test_process_output_is_shown_under_its_name_and_foreign_names_are_refused() -> None:
    e = _engine()
    assert e.on_message(0, m.ProcessOutput("server", "stdout"), b"hi\n", 0.3) == [
        ShowOutput(0, -1, "stdout", b"hi\n", "server")]
    out = e.on_message(1, m.ProcessOutput("server", "stdout"), b"x", 0.3)
    assert isinstance(out[0], Report) and out[0].kind == "security"
    out = e.on_message(1, m.ProcessExit("server", 0), None, 0.3)
    assert isinstance(out[0], Report) and e.ending is None


def test_a_process_others_depend_on_is_relayed_to_them() -> None:
    procs = [[m.ProcessStart("server", ["s"])],
             [m.ProcessStart("explorer", ["e"], depends_on=[m.DependsOn("server", "START", node=0)])]]
    nodes = [NodePlan(i, f"node{i}", f"10.0.0.{i + 1}", [], {}, [], procs[i]) for i in range(2)]
    e = JobEngine(2, Timing(), now=0.0)
    for i in range(2):
        e.on_message(i, m.Hello(f"node{i}", 2, 100 + i), None, 0.1)
    b = DirectPmi()
    e.start(b, b.starts(JobPlan("job", "kvs", 0, nodes, "(vector,(0,2,0))"), "/w"), {}, 0.2)
    assert e.on_message(0, m.ProcessStarted("server", 7), None, 0.3) == [
        Send(1, m.PeerProcess(0, "server", started=True))]
    assert e.on_message(1, m.ProcessStarted("explorer", 8), None, 0.3) == []  # nobody waits for it


def test_an_agent_that_ends_while_a_done_job_stops_is_no_failure() -> None:
    e = _engine(ranks=False)
    e.on_message(1, m.ProcessExit("explorer", 0), None, 0.5)
    out = e.on_tick(0.6, {})
    assert all(a.msg == m.Kill(1.0, stay=True) for a in out if isinstance(a, Send) and isinstance(a.msg, m.Kill))
    e.on_tick(0.7, {1: 0})  # node 1 ended
    assert e.failure is None and 1 in e.lost
    for name in ("server", "tele"):
        e.on_message(0, m.ProcessExit(name, 143, "SIGTERM"), None, 0.8)
    e.on_tick(0.9, {})
    assert e.phase == "DONE" and e.outcome()[0] == "SUCCEEDED"
