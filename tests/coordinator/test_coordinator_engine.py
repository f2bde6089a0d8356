"""The coordinator's job engine driven by scripted events: no sockets, no processes, no root."""

from __future__ import annotations

import signal

import pytest

from mnp.control import messages as m
from mnp.coordinator.actions import RankDone, Report, Send, ShowOutput, Transition
from mnp.coordinator.engine import EXIT_INTERRUPTED, EXIT_NODE_LOST, EXIT_TIMEOUT, JobEngine, Timing
from mnp.launch.backends import LAUNCHER, DirectPmi, Mpirun
from mnp.plan import JobPlan, NodePlan

pytestmark = pytest.mark.noroot

PRTED = ("PRTE_PREFIX=/opt/ompi;export PRTE_PREFIX;LD_LIBRARY_PATH=/opt/ompi/lib:$LD_LIBRARY_PATH;"
         "export LD_LIBRARY_PATH;/opt/ompi/bin/prted --prtemca ess \"env\" --prtemca ess_base_vpid 1")


def _plan(n: int = 2, rpn: int = 2) -> JobPlan:
    nodes = [NodePlan(i, f"node{i}", f"10.0.0.{i + 1}", ["app"], {}, list(range(i * rpn, (i + 1) * rpn)))
             for i in range(n)]
    return JobPlan("job", "kvs", 0, nodes, "(vector,(0,2,2))")


def _hello(i: int) -> m.Hello:
    return m.Hello(f"node{i}", 2, 100 + i)


def _sends(actions: list, kind: type) -> list[Send]:  # type: ignore[type-arg]
    return [a for a in actions if isinstance(a, Send) and isinstance(a.msg, kind)]


def joined(n: int = 2, **timing: float) -> JobEngine:
    e = JobEngine(n, Timing(**timing), now=0.0)
    for i in range(n):
        out = e.on_message(i, _hello(i), None, 0.1)
    assert out == [Transition("STARTING")] and e.phase == "PLANNING"
    return e


def running(n: int = 2, backend=None, **timing: float) -> tuple[JobEngine, list]:  # type: ignore[no-untyped-def]
    e = joined(n, **timing)
    b = backend or DirectPmi()
    plan = _plan(n)
    out = e.start(b, b.starts(plan, "/work"), {"10.0.0.1": 0, "10.0.0.2": 1, "node1": 1}, 0.2)
    return e, out


def test_start_sends_each_node_its_ranks_and_started_means_running() -> None:
    e, out = running()
    starts = _sends(out, m.Start)
    assert [s.node for s in starts] == [0, 1]
    assert [r.rank for r in starts[1].msg.ranks] == [2, 3] and starts[1].msg.cwd == "/work"  # type: ignore[union-attr]
    assert e.on_message(0, m.Started({0: 1, 1: 2}), None, 0.3) == []
    assert e.on_message(1, m.Started({2: 3, 3: 4}), None, 0.3) == [Transition("RUNNING")]


def test_all_ranks_exit_zero_succeeds() -> None:
    e, _ = running()
    for rank in range(4):
        out = e.on_message(rank // 2, m.Exit(rank, 0), None, 1.0)
        assert out == [RankDone(rank)]
    e.on_tick(1.1, {})
    assert e.done and e.outcome() == ("SUCCEEDED", 0, "every rank exited 0")


def test_first_failure_wins_and_stops_every_node_once() -> None:
    e, _ = running(grace_s=2.0)
    e.on_message(1, m.Exit(3, 7, None, ""), None, 1.0)
    e.on_message(0, m.Exit(0, 9, None, ""), None, 1.0)  # a later failure does not replace the first
    out = e.on_tick(1.1, {})
    assert [(s.node, s.msg) for s in _sends(out, m.Kill)] == [(0, m.Kill(2.0)), (1, m.Kill(2.0))]
    assert _sends(e.on_tick(1.2, {}), m.Kill) == []  # once
    assert e.outcome() == ("FAILED", 7, "node 1 rank 3 exited with code 7")
    for rank in (1, 2):
        e.on_message(rank // 2, m.Exit(rank, 143, "SIGTERM", ""), None, 1.5)
    e.on_tick(1.6, {})
    assert e.done


def test_stop_gives_up_on_silent_nodes_after_grace() -> None:
    e, _ = running(grace_s=1.0)
    e.on_message(0, m.Exit(0, 1), None, 1.0)
    e.on_tick(1.0, {})
    assert e.phase == "STOPPING"
    e.on_tick(6.9, {})
    assert not e.done
    e.on_tick(7.1, {})
    assert e.done


def test_lost_node_ends_the_job_without_waiting_for_its_ranks() -> None:
    e, _ = running(grace_s=1.0)
    out = e.on_tick(1.0, {1: -9})
    assert {a.rank for a in out if isinstance(a, RankDone)} == {2, 3}
    assert e.outcome() == ("FAILED", EXIT_NODE_LOST, "node 1 lost: its agent exited (status -9)")
    assert [s.node for s in _sends(out, m.Kill)] == [0]  # the lost node is not asked
    for rank in (0, 1):
        e.on_message(0, m.Exit(rank, 143, "SIGTERM"), None, 1.2)
    e.on_tick(1.3, {1: -9})
    assert e.done


def test_silent_node_is_lost_after_dead_s() -> None:
    e, _ = running(dead_s=5.0)
    e.on_message(0, m.Heartbeat(), None, 4.0)
    e.on_tick(5.0, {})
    assert e.failure is None
    e.on_tick(5.3, {})
    assert e.outcome() == ("FAILED", EXIT_NODE_LOST, "node 1 lost: no heartbeat for 5s")


def test_barrier_is_relayed_when_every_node_entered() -> None:
    e, _ = running()
    assert e.on_message(0, m.Barrier({"a": "1"}), None, 1.0) == []
    out = e.on_message(1, m.Barrier({"b": "2"}), None, 1.0)
    assert [(s.node, s.msg) for s in out] == [(0, m.BarrierDone({"a": "1", "b": "2"})),  # type: ignore[union-attr]
                                              (1, m.BarrierDone({"a": "1", "b": "2"}))]
    assert e.on_message(0, m.Barrier({}), None, 1.1) == []  # the next barrier starts afresh


def test_abort_fails_with_its_code_and_message() -> None:
    e, _ = running()
    e.on_message(1, m.Abort(2, 5, "bad input"), None, 1.0)
    assert e.outcome() == ("FAILED", 5, "node 1 rank 2 called MPI_Abort(5): bad input")


def test_timeout_is_final_and_not_retryable() -> None:
    e, _ = running(timeout_s=10.0)
    e.on_tick(9.0, {})
    assert e.failure is None
    e.on_tick(10.5, {})
    assert e.failure is not None and e.failure.exit_code == EXIT_TIMEOUT and not e.failure.retryable


def test_ctrl_c_during_bring_up_cancels() -> None:
    e = JobEngine(3, Timing(), now=0.0)
    e.on_message(0, _hello(0), None, 0.1)
    e.interrupt(signal.SIGINT)
    e.on_tick(0.2, {})
    assert e.done and e.outcome() == ("CANCELLED", EXIT_INTERRUPTED, "interrupted by SIGINT")
    assert not e.failure.retryable  # type: ignore[union-attr]


def test_sigterm_while_running_is_143_and_stops_ranks() -> None:
    e, _ = running()
    e.interrupt(signal.SIGTERM)
    out = e.on_tick(1.0, {})
    assert len(_sends(out, m.Kill)) == 2 and e.outcome() == ("CANCELLED", 143, "interrupted by SIGTERM")


def test_join_deadline_names_the_missing_nodes() -> None:
    e = JobEngine(3, Timing(join_timeout_s=5.0), now=0.0)
    e.on_message(1, _hello(1), None, 0.1)
    e.on_tick(5.5, {})
    assert e.done and e.outcome()[1:] == (EXIT_NODE_LOST, "node(s) 0, 2 did not join within 5s (1/3 joined: 1)")


def test_agent_that_fails_to_start_is_named() -> None:
    e = JobEngine(2, Timing(), now=0.0)
    e.on_tick(0.5, {1: 2})
    assert e.outcome()[2] == "node 1 lost: it failed to start its agent (exit status 2)"


def test_pings_every_heartbeat_to_joined_nodes() -> None:
    e = JobEngine(2, Timing(heartbeat_s=1.0), now=0.0)
    e.on_message(0, _hello(0), None, 0.1)
    assert [s.node for s in _sends(e.on_tick(0.2, {}), m.Ping)] == [0]
    assert _sends(e.on_tick(0.5, {}), m.Ping) == []
    assert len(_sends(e.on_tick(1.3, {}), m.Ping)) == 1


def test_shutdown_waits_for_byes_and_an_ending_agent_is_no_failure() -> None:
    e, _ = running()
    for rank in range(4):
        e.on_message(rank // 2, m.Exit(rank, 0), None, 1.0)
    e.on_tick(1.0, {})
    out = e.shutdown(1.1)
    assert [s.node for s in _sends(out, m.Shutdown)] == [0, 1]
    e.on_message(0, m.Bye(1000, ["mnp_shm"]), None, 1.2)
    e.on_tick(1.3, {1: 0})  # node 1's agent exited after the shutdown
    assert e.done and e.outcome()[0] == "SUCCEEDED"
    assert e.bye_info() == {"agent_maxrss_kb": {"0": 1000}, "shm_removed": {"0": ["mnp_shm"]}}


def test_shutdown_before_every_hello_waits_only_for_the_nodes_it_heard() -> None:
    """A job stopped during bring-up (Ctrl-C, a refused node): a node never heard from has no route yet, so no
    Shutdown reaches it and no goodbye will come; the goodbyes of the others end BYE, not bye_s."""
    e = JobEngine(3, Timing(), now=0.0)
    e.on_message(0, _hello(0), None, 0.1)
    e.interrupt(signal.SIGINT)
    e.on_tick(0.2, {})
    e.shutdown(0.3)
    assert e.unheard == {1, 2} and not e.done
    e.on_message(2, _hello(2), None, 0.35)  # read only now: still not waited for
    e.on_tick(0.4, {})
    assert not e.done
    e.on_message(0, m.Bye(1000), None, 0.5)
    e.on_tick(0.6, {})
    assert e.done and e.outcome()[0] == "CANCELLED"


def test_a_bye_read_after_its_agent_ended_is_kept_not_refused() -> None:
    """At 128 nodes an agent's exit was seen before its last frames were read: each Bye was reported as a
    message from a stranger. Once the job said goodbye, a node that ended may still have frames in flight."""
    e, _ = running()
    for rank in range(4):
        e.on_message(rank // 2, m.Exit(rank, 0), None, 1.0)
    e.on_tick(1.0, {})
    e.shutdown(1.1)
    e.on_tick(1.2, {1: 0})  # node 1's agent ended; its Bye is still on the socket
    assert e.on_message(1, m.Bye(900), None, 1.3) == [] and e.refused == []
    assert e.bye_info()["agent_maxrss_kb"] == {"1": 900}
    assert e.on_message(7, m.Bye(900), None, 1.3)[0].kind == "security"  # not a node of this job: still refused


def test_a_lost_relay_takes_its_subtree_and_nothing_waits_for_it() -> None:
    """Tree(4, 2): node 0 relays for nodes 2 and 3. Node 0's agent exits: they can be reached no more either."""
    from mnp.control.tree import Tree

    e = JobEngine(4, Timing(), now=0.0)
    e.tree = Tree(4, 2)
    for i in range(4):
        e.on_message(i, _hello(i), None, 0.1)
    b = DirectPmi()
    e.start(b, b.starts(_plan(4, 1), "/work"), {}, 0.2)
    out = e.on_tick(1.0, {0: -9})
    assert e.lost == {0, 2, 3} and e.failure is not None and "node 0 lost" in e.failure.reason
    assert sorted(a.rank for a in out if isinstance(a, RankDone)) == [0, 2, 3]
    assert sorted(e.waiting) == [1]
    assert [s.node for s in _sends(out + e.on_tick(2.5, {}), m.Kill)] == [1]  # stop what is left


def test_output_is_shown_and_only_for_the_nodes_own_ranks() -> None:
    e, _ = running()
    assert e.on_message(1, m.Output(2, "stdout"), b"hi\n", 1.0) == [ShowOutput(1, 2, "stdout", b"hi\n")]
    out = e.on_message(1, m.Output(0, "stdout"), b"forged\n", 1.0)
    assert out == [Report("security", "node 1 sent output for rank 0, which is not its own; dropped")]


def test_forged_exit_and_abort_for_another_nodes_rank_change_nothing() -> None:
    e, _ = running()
    out = e.on_message(1, m.Exit(0, 9), None, 1.0) + e.on_message(1, m.Abort(0, 9), None, 1.0)
    assert all(isinstance(a, Report) and a.kind == "security" for a in out) and len(out) == 2
    assert e.failure is None and 0 in e.waiting


def test_invalid_message_is_dropped_and_reported() -> None:
    e, _ = running()
    out = e.on_message(0, m.InvalidMessage("Object missing required field `rank`"), None, 1.0)
    assert out == [Report("security", "node 0 sent an invalid message (Object missing required field `rank`); "
                                      "dropped")]
    assert e.failure is None


def test_message_from_outside_the_job_is_refused() -> None:
    e, _ = running()
    assert e.on_message(9, m.Heartbeat(), None, 1.0)[0].kind == "security"  # type: ignore[union-attr]


def test_rexec_in_a_pmi_job_is_refused() -> None:
    e, _ = running()
    out = e.on_message(0, m.Rexec("0.1", "node1", PRTED), None, 1.0)
    assert out == [Report("security", "node 0 asked to run a remote command, but no launcher runs in this job; "
                                      "refused")]
    assert e.rexec.execs == {}


def test_mpirun_job_forwards_its_launchers_daemons_and_their_output() -> None:
    e, out = running(backend=Mpirun("openmpi"))
    starts = {s.node: s.msg for s in _sends(out, m.Start)}
    assert starts[0].ranks[0].rank == LAUNCHER and starts[0].rsh and starts[1].daemons  # type: ignore[union-attr]
    assert e.waiting == {LAUNCHER: 0}
    out = e.on_message(0, m.Rexec("0.1", "10.0.0.2", PRTED), None, 1.0)
    assert out == [Send(1, m.Exec("0.1", PRTED))]
    assert e.on_message(1, m.ExecOutput("0.1", "stderr"), b"x", 1.1) == [Send(0, m.RexecOutput("0.1", "stderr"),
                                                                              b"x")]
    assert e.on_message(0, m.RexecKill("0.1"), None, 1.15) == [Send(1, m.ExecKill("0.1"))]
    assert e.on_message(1, m.ExecExit("0.1", 0), None, 1.2) == [Send(0, m.RexecExit("0.1", 0))]
    assert e.rexec.execs == {}
    # the launcher's ranks' output comes from the node they run on
    assert e.on_message(1, m.Output(3, "stdout"), b"r3\n", 1.3) == [ShowOutput(1, 3, "stdout", b"r3\n")]


def test_rexec_from_a_node_without_the_launcher_is_refused() -> None:
    e, _ = running(backend=Mpirun("openmpi"))
    out = e.on_message(1, m.Rexec("1.1", "10.0.0.1", PRTED), None, 1.0)
    assert out == [Report("security", "node 1 asked to run a remote command, but only node 0 runs the launcher; "
                                      "refused")]
    assert e.rexec.execs == {}


@pytest.mark.parametrize("command", ["id", "sh -c 'curl x | sh'", PRTED + "; rm -rf /", "prted && id",
                                     "/opt/ompi/bin/prted $(id)", "prted > /etc/passwd"])
def test_rexec_of_anything_but_a_daemon_is_refused_and_answered(command: str) -> None:
    e, _ = running(backend=Mpirun("openmpi"))
    out = e.on_message(0, m.Rexec("0.7", "10.0.0.2", command), None, 1.0)
    assert isinstance(out[0], Report) and out[0].kind == "security" and "refused" in out[0].text
    assert Send(0, m.RexecExit("0.7", 126)) in out  # the launcher hears no, instead of waiting forever
    assert not any(isinstance(a, Send) and isinstance(a.msg, m.Exec) for a in out) and e.rexec.execs == {}


def test_rexec_after_the_launcher_ended_is_refused() -> None:
    e, _ = running(backend=Mpirun("openmpi"))
    e.on_message(0, m.Exit(LAUNCHER, 0), None, 1.0)
    out = e.on_message(0, m.Rexec("0.2", "10.0.0.2", PRTED), None, 1.1)
    assert out[0] == Report("security", "node 0 asked to run a remote command while no launcher was running; "
                                        "refused")


def test_exec_reports_only_from_the_node_that_runs_it() -> None:
    e, _ = running(backend=Mpirun("openmpi"))
    e.on_message(0, m.Rexec("0.1", "10.0.0.2", PRTED), None, 1.0)
    out = e.on_message(0, m.ExecExit("0.1", 0), None, 1.1)  # node 0 was not asked to run it
    assert isinstance(out[0], Report) and out[0].kind == "security" and "0.1" in e.rexec.execs


def test_unknown_host_gets_an_answer_not_an_exec() -> None:
    e, _ = running(backend=Mpirun("mpich"))
    out = e.on_message(0, m.Rexec("0.1", "elsewhere", "hydra_pmi_proxy --control-port x:1"), None, 1.0)
    assert out[-1] == Send(0, m.RexecExit("0.1", 255)) and e.rexec.execs == {}


def test_barrier_in_a_launcher_job_is_refused() -> None:
    e, _ = running(backend=Mpirun("openmpi"))
    assert e.on_message(1, m.Barrier({"k": "v"}), None, 1.0)[0].kind == "security"  # type: ignore[union-attr]


def test_remount_answers_are_kept_while_planning() -> None:
    e = joined()
    e.on_message(1, m.ShmRemounted(1 << 30, 1 << 30, ""), None, 0.5)
    assert e.remounted == {1: m.ShmRemounted(1 << 30, 1 << 30, "")}


def test_stdin_goes_to_the_nodes_of_the_ranks_that_read_it() -> None:
    e = joined()
    b = DirectPmi()
    starts = b.starts(_plan(), "/w", stdin="all")
    assert [s.stdin_ranks for _, s in sorted(starts.items())] == [[0, 1], [2, 3]]
    e.start(b, starts, {}, 0.2)
    assert e.on_stdin(b"abc") == [Send(0, m.Stdin([0, 1]), b"abc"), Send(1, m.Stdin([2, 3]), b"abc")]
    assert e.on_stdin(b"", eof=True) == [Send(0, m.Stdin([0, 1], True), b""), Send(1, m.Stdin([2, 3], True), b"")]
    e.on_tick(1.0, {1: -9})  # a lost node fails the job: nothing more is fed while it stops
    assert e.on_stdin(b"late") == []


def test_stdin_of_a_launcher_job_goes_to_the_launcher() -> None:
    e = joined()
    b = Mpirun("openmpi")
    starts = b.starts(_plan(), "/w", stdin="0")
    assert starts[0].stdin_ranks == [LAUNCHER] and starts[1].stdin_ranks == []
    e.start(b, starts, {}, 0.2)
    assert e.on_stdin(b"x") == [Send(0, m.Stdin([LAUNCHER]), b"x")]


def test_no_stdin_before_the_ranks_run() -> None:
    assert joined().on_stdin(b"early") == []


def test_a_flood_of_forged_messages_costs_a_counter() -> None:
    """A peer that sends forged messages without end: the first MAX_REFUSED are said and kept, one line says the
    rest are only counted, and then nothing more is kept or printed."""
    from mnp.coordinator.engine import MAX_REFUSED

    e, _ = running()
    said = []
    for i in range(MAX_REFUSED + 5000):
        said += e.on_message(1, m.ProcessOutput(f"forged{i}", "stdout"), b"x", 1.0)
    assert len(said) == MAX_REFUSED + 1 and all(a.kind == "security" for a in said)  # type: ignore[union-attr]
    assert "only counted" in said[-1].text  # type: ignore[union-attr]
    assert len(e.refused) == MAX_REFUSED and e.refused_count == MAX_REFUSED + 5000
    assert e.failure is None
