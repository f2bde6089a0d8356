"""The node agent's engine driven by scripted events: no sockets, no processes, no root."""

from __future__ import annotations

import signal

import pytest

from mnp.control import messages as m
from mnp.node import engine as e
from mnp.node.pmi import format_line

pytestmark = pytest.mark.noroot

PROXY = "/venv/bin/hydra_pmi_proxy --control-port node0:4242 --rmk user --launcher ssh --proxy-id 1"


def _start(ranks: int = 2, **kw: object) -> m.Start:
    return m.Start("kvs", ranks * 2, "(vector,(0,2,2))", "/w", {"A": "1"},
                   [m.RankSpec(r, r, ["app"]) for r in range(ranks)], **kw)  # type: ignore[arg-type]


def engine(**kw: float) -> e.NodeEngine:
    return e.NodeEngine(1, kw.get("heartbeat_s", 1.0), kw.get("dead_s", 10.0), kw.get("first_contact_s", 10.0), 0.0)


def started(ranks: int = 2, **kw: object) -> e.NodeEngine:
    n = engine()
    start = _start(ranks, **kw)
    assert n.on_message(start, None, 0.1) == [e.Spawn(start)]
    out = n.spawned({r: 100 + r for r in range(ranks)}, {})
    assert out == [e.Send(m.Started({r: 100 + r for r in range(ranks)}))]
    return n


def test_heartbeat_every_interval() -> None:
    n = engine(heartbeat_s=1.0)
    assert n.on_tick(0.0) == [e.Send(m.Heartbeat())]
    assert n.on_tick(0.5) == []
    assert n.on_tick(1.0) == [e.Send(m.Heartbeat())]


def test_a_rank_that_cannot_start_is_reported_with_its_reason() -> None:
    n = engine()
    n.on_message(_start(2), None, 0.1)
    out = n.spawned({0: 100}, {1: (127, "cannot start 'app': No such file or directory")})
    assert out == [e.Send(m.Exit(1, 127, None, "cannot start 'app': No such file or directory")),
                   e.Send(m.Started({0: 100}))]
    assert n.live == {0}


def test_rank_exits_are_reported_with_signal_names() -> None:
    n = started()
    assert n.rank_exited(0, 3) == [e.Send(m.Exit(0, 3, None, ""))]
    assert n.rank_exited(1, -9) == [e.Send(m.Exit(1, 137, "SIGKILL", ""))]
    assert n.live == set()


def test_kill_signals_then_sigkill_after_grace() -> None:
    n = started()
    assert n.on_message(m.Kill(2.0), None, 1.0) == [e.SignalAll(signal.SIGTERM)]
    assert e.SignalAll(signal.SIGKILL) not in n.on_tick(2.5)
    assert e.SignalAll(signal.SIGKILL) in n.on_tick(3.1)
    assert not n.finished  # ranks still count until they are reaped
    n.rank_exited(0, -9)
    n.rank_exited(1, -9)
    assert n.finished


def test_shutdown_with_nothing_running_finishes_at_once() -> None:
    n = engine()
    assert n.on_message(m.Shutdown(), None, 0.5) == []
    assert n.finished


def test_silent_coordinator_stops_the_ranks() -> None:
    n = started()
    n.on_tick(5.0)
    out = n.on_tick(10.2)
    assert e.SignalAll(signal.SIGTERM) in out and any(isinstance(a, e.Log) and "silent" in a.text for a in out)
    assert n.exit_code == 1 and not n.running


def test_unreachable_coordinator_uses_first_contact_limit() -> None:
    n = e.NodeEngine(0, 1.0, 10.0, 60.0, 0.0)
    assert not any(isinstance(a, e.Log) for a in n.on_tick(30.0))
    assert any(isinstance(a, e.Log) and "not reachable for 60s" in a.text for a in n.on_tick(60.5))


def test_signal_and_session_end_stop_the_ranks() -> None:
    for stop in ("signal", "session"):
        n = started()
        out = n.on_signal(signal.SIGTERM) if stop == "signal" else n.on_session_closed()
        assert e.SignalAll(signal.SIGTERM) in out and not n.running


def test_pmi_barrier_goes_up_and_comes_back() -> None:
    n = started()
    n.on_pmi_line(0, "cmd=init pmi_version=1 pmi_subversion=1")
    assert n.on_pmi_line(0, "cmd=put kvsname=kvs key=a value=1") == [e.PmiReply(0, format_line(cmd="put_result",
                                                                                                 rc=0))]
    assert n.on_pmi_line(0, "cmd=barrier_in") == []
    assert n.on_pmi_line(1, "cmd=barrier_in") == [e.Send(m.Barrier({"a": "1"}))]
    out = n.on_message(m.BarrierDone({"a": "1", "b": "2"}), None, 1.0)
    assert out == [e.PmiReply(0, format_line(cmd="barrier_out", rc=0)),
                   e.PmiReply(1, format_line(cmd="barrier_out", rc=0))]
    assert n.on_pmi_line(1, "cmd=get kvsname=kvs key=b") == [e.PmiReply(1, format_line(cmd="get_result", rc=0,
                                                                                         value="2"))]


def test_pmi_abort_is_sent_up() -> None:
    n = started()
    out = n.on_pmi_line(1, "cmd=abort exitcode=4 message=it broke")
    assert e.Send(m.Abort(1, 4, "it broke")) in out


def test_second_start_is_dropped() -> None:
    n = started()
    out = n.on_message(_start(1), None, 1.0)
    assert len(out) == 1 and isinstance(out[0], e.Log)


def test_exec_runs_only_daemons_on_a_daemon_node() -> None:
    n = started(0, daemons=True)
    assert n.on_message(m.Exec("0.1", PROXY), None, 1.0) == [e.RunExec("0.1", PROXY)]
    assert n.exec_exited("0.1", -15) == [e.Send(m.ExecExit("0.1", 143))]
    out = n.on_message(m.Exec("0.2", "id; " + PROXY), None, 1.1)
    assert not any(isinstance(a, e.RunExec) for a in out) and e.Send(m.ExecExit("0.2", 126)) in out


def test_exec_is_refused_on_a_node_that_runs_ranks_itself() -> None:
    n = started(2)
    out = n.on_message(m.Exec("0.1", PROXY), None, 1.0)
    assert not any(isinstance(a, e.RunExec) for a in out)
    assert any(isinstance(a, e.Log) and "refused" in a.text for a in out)


def test_exec_before_start_is_refused() -> None:
    out = engine().on_message(m.Exec("0.1", PROXY), None, 0.1)
    assert e.Send(m.ExecExit("0.1", 126)) in out


def test_invalid_message_is_logged_not_raised() -> None:
    out = engine().on_message(m.InvalidMessage("bad"), None, 0.1)
    assert out == [e.Log("invalid message from the coordinator (bad); dropped")]


def test_rexec_answers_reach_the_relay_only_on_the_launcher_node() -> None:
    assert started(0, daemons=True).on_message(m.RexecExit("x", 0), None, 1.0) == []
    n = started(1, rsh=True)
    assert n.on_message(m.RexecExit("x", 0), None, 1.0) == [e.DeliverRexec(m.RexecExit("x", 0), None)]


def test_remount_and_ping() -> None:
    n = engine()
    assert n.on_message(m.RemountShm(1 << 30), None, 0.1) == [e.Remount(1 << 30)]
    assert n.on_message(m.Ping(), None, 0.2) == [] and n.heard


def test_stdin_is_written_only_to_ranks_started_to_read_it() -> None:
    n = started(2, stdin_ranks=[0])
    assert n.on_message(m.Stdin([0, 1]), b"data", 1.0) == [e.WriteStdin([0], b"data", False)]
    assert n.on_message(m.Stdin([1]), b"data", 1.0) == []
    assert n.on_message(m.Stdin([0], True), b"", 1.1) == [e.WriteStdin([0], b"", True)]
