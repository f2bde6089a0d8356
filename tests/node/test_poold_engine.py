"""The pool agent's decisions (:class:`mnp.node.poold.PoolEngine`) and its messages (:mod:`mnp.control.pool`),
without sockets or processes."""

from __future__ import annotations

import os
import signal

import pytest

from mnp.control import pool as p
from mnp.node.poold import FIRST_CONTACT_S, STOP_GRACE_S, Cleanup, Exit, Fork, PoolEngine, Reply, SignalAgents

pytestmark = pytest.mark.noroot

A, B = b"client-a", b"client-b"
FACTS = {"hostname": "h0", "python": "3.11", "mnp": "0.1", "mpi": "MPICH 4", "pid": 42}


def engine(idle: float = 60.0) -> PoolEngine:
    return PoolEngine(idle, 0.0, dict(FACTS), started=1000.0)


def test_ping_says_who_it_is() -> None:
    e = engine()
    [r] = e.on_request(A, p.Ping(), 1.0)
    assert r == Reply(A, p.Ready("h0", "3.11", "0.1", "MPICH 4", 42, 0, 60.0, 1000.0))


def test_run_forks_once_per_client_and_node() -> None:
    e = engine()
    handoff = {"node": 3, "endpoint": "tcp://10.0.0.1:5000"}
    assert e.on_request(A, p.Run(3, handoff), 1.0) == [Fork(A, 3, handoff)]
    assert e.forked(A, 3, 101) == [Reply(A, p.Running(3, 101))]
    [again] = e.on_request(A, p.Run(3, handoff), 1.1)
    assert isinstance(again.msg, p.Refused) and "runs already" in again.msg.reason  # type: ignore[union-attr]
    assert e.on_request(B, p.Run(3, handoff), 1.2) == [Fork(B, 3, handoff)]  # another job's node 3: its own
    e.forked(B, 3, 102)
    [r] = e.on_request(A, p.Ping(), 1.3)
    assert r.msg.agents == 2 and r.msg.served == 2  # type: ignore[union-attr]
    e.on_exit(101, 0, 1.4)
    [r] = e.on_request(A, p.Ping(), 1.5)
    assert r.msg.agents == 1 and r.msg.served == 2  # type: ignore[union-attr]


@pytest.mark.parametrize("node, handoff", [(-1, {"node": -1}), (2, {"node": 3}), (2, {})])
def test_run_refuses_a_handoff_of_another_node(node: int, handoff: dict[str, object]) -> None:
    [r] = engine().on_request(A, p.Run(node, handoff), 1.0)
    assert isinstance(r, Reply) and isinstance(r.msg, p.Refused) and r.msg.node == node


def test_malformed_requests_are_refused_with_the_reason() -> None:
    for frame in (b"", b"{", b'{"t": "run", "node": "x", "handoff": {}}', b'{"t": "shell", "cmd": "id"}',
                  b'{"t": "ping", "extra": 1}', b'[1, 2]', b"x" * (p.MAX_FRAME + 1)):
        msg = p.decode_to_pool(frame)
        assert isinstance(msg, str) and msg, frame[:40]
        [r] = engine().on_request(A, msg, 1.0)
        assert isinstance(r, Reply) and isinstance(r.msg, p.Refused) and "not a pool request" in r.msg.reason
    assert p.decode_to_pool(p.encode(p.Run(1, {"node": 1}))) == p.Run(1, {"node": 1})
    assert isinstance(p.decode_from_pool(p.encode(p.Ping())), str)  # a request is not an answer


def test_an_answer_with_a_field_this_client_does_not_know_still_arrives() -> None:
    """A pool agent of a newer mnp adds a field to Ready: the client still reads it, so its version check can say
    'mnp pool stop, then mnp pool start' instead of a decode error (requests, above, stay strict)."""
    newer = b'{"t": "ready", "hostname": "h0", "python": "3.11", "mnp": "0.2", "mpi": "", "pid": 7, "agents": 0, ' \
            b'"idle_s": 60.0, "started": 1.0, "served": 3, "later": [1, 2]}'
    got = p.decode_from_pool(newer)
    assert isinstance(got, p.Ready) and got.mnp == "0.2" and got.served == 3
    older = b'{"t": "ready", "hostname": "h0", "python": "3.11", "mnp": "0.1", "mpi": "", "pid": 7, "agents": 0, ' \
            b'"idle_s": 60.0, "started": 1.0}'
    assert p.decode_from_pool(older) == p.Ready("h0", "3.11", "0.1", "", 7, 0, 60.0, 1.0, 0)


def test_a_kill_read_with_its_run_in_one_batch_stops_the_agent_once_forked() -> None:
    """A pool agent that was stalled reads a job's Run and the Kill its client sent on giving up together: the
    Kill comes before the fork, and the agent must still be stopped, not run until it times out."""
    e = engine()
    handoff = {"node": 1, "endpoint": "tcp://10.0.0.1:5000"}
    assert e.on_request(A, p.Run(1, handoff), 1.0) == [Fork(A, 1, handoff)]
    assert e.on_request(A, p.Kill(1), 1.0) == [SignalAgents((), signal.SIGTERM)]
    assert e.forked(A, 1, 4242) == [Reply(A, p.Running(1, 4242)), SignalAgents((4242,), signal.SIGTERM)]
    assert e.forked(A, 1, 4243) == [Reply(A, p.Running(1, 4243))]  # the pending Kill was used once
    assert e.forked(B, 2, 4244) == [Reply(B, p.Running(2, 4244))]


def test_kill_signals_only_that_clients_agent() -> None:
    e = engine()
    e.forked(A, 1, 101)
    e.forked(B, 1, 201)
    e.forked(A, 2, 102)
    assert e.on_request(A, p.Kill(1), 2.0) == [SignalAgents((101,), signal.SIGTERM)]
    assert e.on_request(B, p.Kill(2), 2.0) == [SignalAgents((), signal.SIGTERM)]  # not B's


def test_an_agents_end_goes_to_its_client_and_restarts_the_idle_clock() -> None:
    e = engine(idle=10)
    e.forked(A, 0, 101)
    assert e.on_tick(50.0) == []  # an agent runs: never idle
    e.on_guard(101, b"group 4711\nclose\n")  # it ended cleanly: nothing to clean up after it
    assert e.on_exit(101, 7, 50.0) == [Reply(A, p.Ended(0, 101, 7))]
    assert e.on_exit(999, 0, 50.0) == []  # not a job's agent
    assert e.on_tick(59.0) == []
    [x] = e.on_tick(60.0)
    assert isinstance(x, Exit) and x.code == 0 and "idle" in x.why


def test_stop_tells_agents_waits_for_them_then_kills() -> None:
    e = engine()
    e.forked(A, 0, 101)
    e.forked(A, 1, 102)
    out = e.on_request(B, p.Stop(), 5.0)
    assert out == [Reply(B, p.Stopping(2)), SignalAgents((101, 102), signal.SIGTERM)]
    [r] = e.on_request(A, p.Run(2, {"node": 2}), 5.1)
    assert isinstance(r, Reply) and isinstance(r.msg, p.Refused) and "stopping" in r.msg.reason
    assert e.on_tick(5.0 + STOP_GRACE_S - 0.1) == []
    assert e.on_tick(5.0 + STOP_GRACE_S) == [SignalAgents((101, 102), signal.SIGKILL)]
    assert e.on_tick(5.0 + STOP_GRACE_S + 0.1) == []  # killed once
    [ended, cleanup] = e.on_exit(101, 137, 16.0)  # killed: what it leaves is cleaned up after it
    assert ended == Reply(A, p.Ended(0, 101, 137)) and isinstance(cleanup, Cleanup) and cleanup.keep == {102}
    [ended, cleanup, x] = e.on_exit(102, 137, 16.0)  # the clean-up before the pool agent's own end
    assert ended == Reply(A, p.Ended(1, 102, 137)) and isinstance(cleanup, Cleanup) and x == Exit(0, "stopped")


def test_an_agent_that_dies_without_closing_is_cleaned_up_after_sparing_the_live_agents_groups() -> None:
    """The watchdog pipe's lines may come split anywhere; an agent that ends without ``close`` gets a Cleanup of
    the groups, /dev/shm names and directories it told, which spares every live agent (its session: its pid) and
    every group a live agent told."""
    e = engine()
    e.forked(A, 0, 101, "mark-101")
    e.forked(B, 0, 102, "mark-102")
    e.on_guard(101, b"gro")
    e.on_guard(101, b"up 501\nshm kvs_7\ndir /tmp/mnp-agent-x\ngroup 1\n")  # group 1 is never a rank's
    e.on_guard(102, b"group 601\ngroup 602\n")
    e.on_guard(999, b"group 5\n")  # not an agent's pipe: ignored
    [ended, cleanup] = e.on_exit(101, 137, 3.0)
    assert ended == Reply(A, p.Ended(0, 101, 137)) and isinstance(cleanup, Cleanup)
    assert cleanup.pid == 101 and cleanup.token == "mark-101"  # its processes are known by their agent's mark
    assert cleanup.state.groups == {501} and cleanup.state.kvsnames == ["kvs_7"]
    assert cleanup.state.dirs == ["/tmp/mnp-agent-x"] and cleanup.keep == {102, 601, 602}
    e.on_guard(102, b"close\n")
    assert e.on_exit(102, 0, 4.0) == [Reply(B, p.Ended(0, 102, 0))]


def test_a_signal_stops_it_like_stop_and_an_empty_pool_exits_at_once() -> None:
    e = engine()
    [x] = e.on_signal(signal.SIGTERM, 1.0)
    assert isinstance(x, Exit) and x.code == 0
    e = engine()
    e.forked(A, 0, 101)
    assert e.on_signal(signal.SIGHUP, 1.0) == [SignalAgents((101,), signal.SIGTERM)]
    assert e.on_tick(1.0 + STOP_GRACE_S) == [SignalAgents((101,), signal.SIGKILL)]
    [x] = e.on_tick(1.0 + STOP_GRACE_S + 5)
    assert isinstance(x, Exit) and x.code == 1  # its agent would not die even of SIGKILL: said, not hidden


def test_a_status_query_does_not_keep_it_alive_and_an_unreached_one_exits() -> None:
    e = engine(idle=10)
    e.on_request(A, p.Ping(), 9.0)
    [x] = e.on_tick(10.0)  # pinged at 9 s, idle since 0 s: a monitor does not keep a pool forever
    assert isinstance(x, Exit) and "idle" in x.why
    e = PoolEngine(3600.0, 0.0, dict(FACTS), born=0.0)
    assert e.on_tick(FIRST_CONTACT_S - 0.1) == []
    [x] = e.on_tick(FIRST_CONTACT_S)  # its start failed half-way, or a firewall: no client ever reached it
    assert isinstance(x, Exit) and "never reached" in x.why
    e = PoolEngine(3600.0, 0.0, dict(FACTS), born=0.0)
    e.on_request(A, p.Ping(), 1.0)
    assert e.on_tick(FIRST_CONTACT_S + 1) == []


def test_frames_that_break_decoders_are_reasons_not_crashes() -> None:
    deep = b'{"t":"run","node":0,"handoff":{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}}"
    for frame in (deep, b'{"t":"run","node":0,"handoff":' + b'{"a":' * 50_000 + b"1" + b"}" * 50_001):
        msg = p.decode_to_pool(frame)
        assert isinstance(msg, str) and msg
        assert isinstance(p.decode_from_pool(frame), str)


def test_guard_lines_over_long_are_dropped_to_their_end_and_emptied_groups_forgotten() -> None:
    """A watchdog pipe's line longer than any of the agent's is dropped whole, however it is split, and the next
    line counts; prune forgets a group no live process is in, and keeps one that a process still is in."""
    from mnp.node.watchdog import GuardState, ids_in_use

    g = GuardState()
    g.feed(b"group 7" + b"1" * 5000)
    g.feed(b"1" * 100 + b" group 9\ngroup 12")
    g.feed(b"\nshm kvs_1\n")
    assert g.groups == {12} and g.kvsnames == ["kvs_1"]
    mine = os.getpgid(0)
    assert mine in ids_in_use() and os.getsid(0) in ids_in_use()
    g.groups = {mine, 4_194_303}  # ours, and a number no process has (pid_max's largest)
    g.prune()
    assert g.groups == {mine}
