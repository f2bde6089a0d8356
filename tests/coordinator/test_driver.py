"""The coordinator's driver end to end over a fake cluster provider (tests/fakecluster.py): the real channel,
engine and records, no root and no rank processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakecluster import FakeCluster, NodeScript, RankScript

from mnp.coordinator import LaunchRequest, launch
from mnp.coordinator.events import Event, JobCreated, Note, RankLines
from mnp.records import Records
from mnp.spec import spec_from_dict

pytestmark = pytest.mark.noroot


def _launch(tmp_path: Path, n: int, scripts: dict[int, NodeScript], **kw: object) -> tuple[object, list[Event]]:
    events: list[Event] = []
    spec = spec_from_dict({"name": "fake", "nodes": n, "ranks_per_node": 1, "command": ["app"], "mpi": "mpich",
                           **kw})
    cluster = FakeCluster("fakejob001", n, scripts)
    result = launch(LaunchRequest(spec=spec, events=events.append, home=tmp_path, cluster=cluster,
                                  job_id="fakejob001", grace_s=0.5, join_timeout_s=3.0, dead_s=2.0))
    return result, events


def test_every_rank_exits_zero(tmp_path: Path) -> None:
    result, events = _launch(tmp_path, 3, {1: NodeScript({1: RankScript(["hello from 1"])})})
    assert (result.state, result.exit_code) == ("SUCCEEDED", 0)  # type: ignore[attr-defined]
    assert isinstance(events[0], JobCreated) and events[0].job_id == "fakejob001"
    assert RankLines(1, 1, "stdout", ["hello from 1"]) in events
    rec = Records(tmp_path).get("fakejob001")
    assert [t[0] for t in rec.transitions] == ["SUBMITTED", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"]
    assert (tmp_path / "jobs" / "fakejob001" / "logs" / "node1.rank1.out").read_text() == "hello from 1\n"


def test_first_failure_sets_the_exit_code_and_stops_the_others(tmp_path: Path) -> None:
    scripts = {0: NodeScript({0: RankScript(after=30)}), 1: NodeScript({1: RankScript(code=7, after=0.2)}),
               2: NodeScript({2: RankScript(after=30)})}
    result, _ = _launch(tmp_path, 3, scripts)
    assert (result.state, result.exit_code) == ("FAILED", 7)  # type: ignore[attr-defined]
    assert result.reason == "node 1 rank 1 exited with code 7"  # type: ignore[attr-defined]
    assert Records(tmp_path).get("fakejob001").state == "FAILED"


def test_lost_node_is_255_and_named(tmp_path: Path) -> None:
    result, _ = _launch(tmp_path, 2, {0: NodeScript({0: RankScript(after=30)}),
                                      1: NodeScript({1: RankScript(after=30)}, die_after=0.3)})
    assert (result.state, result.exit_code) == ("FAILED", 255)  # type: ignore[attr-defined]
    assert result.reason.startswith("node 1 lost")  # type: ignore[attr-defined]


def test_node_that_never_joins_is_named(tmp_path: Path) -> None:
    result, _ = _launch(tmp_path, 3, {2: NodeScript(join=False)})
    assert (result.state, result.exit_code) == ("FAILED", 255)  # type: ignore[attr-defined]
    assert "node(s) 2 did not join within 3s (2/3 joined: 0, 1)" in result.reason  # type: ignore[attr-defined]


def test_timeout_is_124(tmp_path: Path) -> None:
    result, _ = _launch(tmp_path, 2, {0: NodeScript({0: RankScript(after=30)})}, timeout=1)
    assert (result.state, result.exit_code) == ("FAILED", 124)  # type: ignore[attr-defined]


def test_retry_runs_a_second_attempt(tmp_path: Path) -> None:
    result, events = _launch(tmp_path, 2, {1: NodeScript({1: RankScript(code=3)})}, retry={"attempts": 2})
    assert result.exit_code == 3  # type: ignore[attr-defined]
    assert any(isinstance(e, Note) and "attempt 1 of 2 failed" in e.text for e in events)
    assert [t[0] for t in Records(tmp_path).get("fakejob001").transitions].count("RUNNABLE") == 2


@pytest.mark.parametrize("env", [{}, {"MNP_HEARTBEAT": "0.4", "MNP_DEAD_AFTER": "7", "MNP_TELEMETRY_INTERVAL": "0"}])
def test_handoffs_sent_ahead_carry_the_clocks_the_job_keeps(env: dict[str, str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool job's agents are handed their clocks before the job exists (the CLI's prestart): they must be the
    ones its engine then keeps, from the environment or the defaults."""
    from mnp.coordinator.bringup import handoff_settings
    from mnp.node.telemetry import telemetry_interval

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    t = LaunchRequest(spec=spec_from_dict({"nodes": 1, "command": ["true"]})).timing(None)
    assert handoff_settings() == {"heartbeat_s": t.heartbeat_s, "dead_s": t.dead_s,
                                  "telemetry_s": telemetry_interval()}
    assert handoff_settings(2.0, 9.0, 3.0) == {"heartbeat_s": 2.0, "dead_s": 9.0, "telemetry_s": 3.0}
