"""The node engine's rules for named processes (mnp.node.depgraph): start order by depends_on, health checks,
essential ends, dependencies that can never be met. Scripted events, no processes, no root."""

from __future__ import annotations

import signal

import pytest

from mnp.control import messages as m
from mnp.node import engine as e

pytestmark = pytest.mark.noroot


def _p(name: str, *deps: tuple[str, str], essential: bool = True, health: m.HealthCheck | None = None
       ) -> m.ProcessStart:
    return m.ProcessStart(name, [name], {}, essential, [m.DependsOn(n, c) for n, c in deps],  # type: ignore[arg-type]
                          health)


def _start(procs: list[m.ProcessStart], ranks: int = 1, after: tuple[tuple[str, str], ...] = ()) -> m.Start:
    return m.Start("kvs", ranks, "(vector,(0,1,1))", "/w", {}, [m.RankSpec(r, r, ["app"]) for r in range(ranks)],
                   processes=procs, ranks_depend_on=[m.DependsOn(n, c) for n, c in after])  # type: ignore[arg-type]


def _spawned(out: list[e.NodeAction]) -> list[str]:
    return [a.spec.name for a in out if isinstance(a, e.SpawnProcess)]


def _sent(out: list[e.NodeAction], kind: type) -> list:
    return [a.msg for a in out if isinstance(a, e.Send) and isinstance(a.msg, kind)]


def engine(start: m.Start) -> tuple[e.NodeEngine, list[e.NodeAction]]:
    n = e.NodeEngine(0, 1.0, 100.0, 100.0, 0.0)
    return n, n.on_message(start, None, 0.0)


def test_processes_start_in_dependency_order() -> None:
    start = _start([_p("db", essential=False), _p("app", ("db", "START")), _p("side", ("app", "START"),
                                                                              essential=False)])
    n, out = engine(start)
    assert e.Spawn(start) in out and _spawned(out) == ["db"]  # ranks have no dependencies: they start at once
    assert _spawned(n.process_spawned("db", 10)) == ["app"]
    out = n.process_spawned("app", 11)
    assert _sent(out, m.ProcessStarted) == [m.ProcessStarted("app", 11)] and _spawned(out) == ["side"]


def test_complete_and_success_wait_for_the_exit() -> None:
    n, out = engine(_start([_p("prep", essential=False), _p("a", ("prep", "COMPLETE")),
                            _p("b", ("prep", "SUCCESS"), essential=False)]))
    assert _spawned(out) == ["prep"]
    assert _spawned(n.process_spawned("prep", 10)) == []
    assert _spawned(n.process_exited("prep", 0)) == ["a", "b"]


def test_a_failed_success_dependency_never_starts_and_an_essential_one_ends_the_node() -> None:
    n, out = engine(_start([_p("prep", essential=False), _p("app", ("prep", "SUCCESS"))]))
    n.spawned({0: 100}, {})
    n.process_spawned("prep", 10)
    out = n.process_exited("prep", 3)
    never = _sent(out, m.ProcessExit)
    assert never[0] == m.ProcessExit("prep", 3, None, "")
    assert never[1] == m.ProcessExit("app", 1, None, "not started: dependency 'prep' (SUCCESS) exited with code 3",
                                     started=False)
    assert e.SignalAll(signal.SIGTERM) in out and not n.running  # the ranks still run: stopped


def test_ranks_wait_for_their_dependencies_and_fail_when_they_cannot_be_met() -> None:
    start = _start([_p("prep", essential=False)], ranks=2, after=(("prep", "SUCCESS"),))
    n, out = engine(start)
    assert e.Spawn(start) not in out and _spawned(out) == ["prep"]
    n.process_spawned("prep", 10)
    out = n.process_exited("prep", 0)
    assert e.Spawn(start) in out
    n2, _ = engine(start)
    n2.process_spawned("prep", 10)
    out = n2.process_exited("prep", 2)
    assert _sent(out, m.Exit) == [m.Exit(r, 1, None, "not started: dependency 'prep' (SUCCESS) exited with code 2")
                                  for r in (0, 1)]
    assert e.Spawn(start) not in out and not n2.running


def test_healthy_dependency_follows_the_health_check() -> None:
    h = m.HealthCheck(["check"], interval=1.0, timeout=0.5, retries=2, start_period=0.0)
    n, _ = engine(_start([_p("db", health=h, essential=False), _p("app", ("db", "HEALTHY"))]))
    n.process_spawned("db", 10)
    assert not any(isinstance(a, e.RunHealth) for a in n.on_tick(0.5))  # first check one interval after start
    out = n.on_tick(1.0)
    assert e.RunHealth("db", ["check"], 0.5) in out
    assert not any(isinstance(a, e.RunHealth) for a in n.on_tick(1.2))  # one check at a time
    assert n.health_result("db", False, 1.3) == []  # one failure of two allowed
    assert e.RunHealth("db", ["check"], 0.5) in n.on_tick(2.4)
    out = n.health_result("db", True, 2.5)
    assert _sent(out, m.ProcessHealth) == [m.ProcessHealth("db", True)] and _spawned(out) == ["app"]


def test_never_healthy_after_retries_fails_the_dependent() -> None:
    h = m.HealthCheck(["check"], interval=1.0, timeout=0.5, retries=2, start_period=1.5)
    n, _ = engine(_start([_p("db", health=h, essential=False), _p("app", ("db", "HEALTHY"))]))
    n.process_spawned("db", 10)
    n.on_tick(1.0)
    assert n.health_result("db", False, 1.1) == []  # within the start period: not counted
    n.on_tick(2.1)
    assert n.health_result("db", False, 2.2) == []
    n.on_tick(3.2)
    out = n.health_result("db", False, 3.3)
    assert _sent(out, m.ProcessHealth) == [m.ProcessHealth("db", False)]
    assert "not started: dependency 'db' (HEALTHY) is unhealthy" in _sent(out, m.ProcessExit)[0].reason


def test_essential_exit_ends_the_node_non_essential_does_not() -> None:
    n, _ = engine(_start([_p("main"), _p("flaky", essential=False), _p("side", essential=False)], ranks=0))
    n.spawned({}, {})
    for pid, name in enumerate(("main", "flaky", "side")):
        n.process_spawned(name, 10 + pid)
    out = n.process_exited("flaky", 1)
    assert _sent(out, m.ProcessExit) == [m.ProcessExit("flaky", 1, None, "")] and n.running
    out = n.process_exited("main", 0)
    assert e.SignalAll(signal.SIGTERM) in out and not n.running and not n.finished  # side still runs
    assert e.SignalAll(signal.SIGKILL) in n.on_tick(n.grace_s + 0.1)


def test_a_stop_reports_what_never_started() -> None:
    n, _ = engine(_start([_p("a", essential=False), _p("b", ("a", "COMPLETE"))], ranks=1,
                         after=(("a", "COMPLETE"),)))
    n.process_spawned("a", 10)
    out = n.on_message(m.Kill(1.0), None, 0.5)
    assert [x.name for x in _sent(out, m.ProcessExit)] == ["b"] and _sent(out, m.Exit)[0].rank == 0
    n.process_exited("a", -15)
    assert n.finished


def test_a_process_that_cannot_start_is_reported() -> None:
    n, _ = engine(_start([_p("a", essential=False), _p("b", ("a", "START"))]))
    out = n.process_failed("a", 127, "cannot start 'a': No such file or directory")
    exits = _sent(out, m.ProcessExit)
    assert exits[0] == m.ProcessExit("a", 127, None, "cannot start 'a': No such file or directory", started=False)
    assert exits[1].name == "b" and "never started" in exits[1].reason


def test_daemons_wait_for_the_ranks_dependencies() -> None:
    start = m.Start("kvs", 2, "", "/w", {}, [], daemons=True, processes=[_p("prep", essential=False)],
                    ranks_depend_on=[m.DependsOn("prep", "COMPLETE")])
    n, _ = engine(start)
    proxy = "/venv/bin/hydra_pmi_proxy --control-port node0:4242 --rmk user --launcher ssh --proxy-id 1"
    assert n.on_message(m.Exec("x1", proxy), None, 0.1) == []  # held
    n.process_spawned("prep", 10)
    assert e.RunExec("x1", proxy) in n.process_exited("prep", 0)


def test_another_nodes_process_is_waited_for_through_peer_messages() -> None:
    start = _start([_p("explorer", ("server", "START")), _p("after", ("prep", "SUCCESS"))])
    start = m.Start(start.kvsname, 1, start.mapping, "/w", {}, start.ranks, processes=[
        m.ProcessStart("explorer", ["e"], depends_on=[m.DependsOn("server", "START", node=0)]),
        m.ProcessStart("after", ["a"], essential=False, depends_on=[m.DependsOn("prep", "SUCCESS", node=0)])])
    n, out = engine(start)
    assert _spawned(out) == []
    assert n.on_message(m.PeerProcess(2, "server", started=True), None, 0.1) == []  # not one we wait for
    assert _spawned(n.on_message(m.PeerProcess(0, "server", started=True), None, 0.2)) == ["explorer"]
    out = n.on_message(m.PeerProcess(0, "prep", started=True, exited=True, code=4), None, 0.3)
    assert _sent(out, m.ProcessExit)[0].reason == "not started: dependency 'prep' on node 0 (SUCCESS) exited with " \
                                                  "code 4"


def test_a_node_whose_work_ended_waits_for_the_coordinator() -> None:
    """An agent that ended on its own would look like a lost node: it stays until told (Shutdown)."""
    n, _ = engine(_start([_p("main")], ranks=0))
    n.spawned({}, {})
    n.process_spawned("main", 10)
    n.process_exited("main", 0)
    assert not n.running and not n.finished
    n.on_message(m.Kill(1.0, stay=True), None, 0.5)  # the coordinator stops the job whose work is done
    assert not n.finished
    n.on_message(m.Shutdown(), None, 0.6)
    assert n.finished


def test_a_node_whose_work_ended_still_ends_when_the_coordinator_is_gone() -> None:
    n, _ = engine(_start([_p("main")], ranks=0))
    n.process_spawned("main", 10)
    n.process_exited("main", 0)
    n.on_tick(50.0)
    assert not n.finished
    n.on_tick(101.0)  # silent for dead_s
    assert n.finished and n.exit_code == 1
