"""Stuck-in-transit alerts on the driver side: recorded, shown once, sent to --notify, which can never hold a job
up (real shell commands, a real records database; no root)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from mnp.coordinator.alerts import Alerts
from mnp.coordinator.events import Event, Note
from mnp.coordinator.transit import TransitWatch
from mnp.records import Records

pytestmark = pytest.mark.noroot


def _alerts(tmp_path: Path, notify: str | None, timeout_s: float = 5.0) -> tuple[Alerts, Records, list[Event]]:
    seen: list[Event] = []
    records = Records(tmp_path / "home")
    records.create("feed000001", "j", 1, ["true"], None)
    return Alerts(TransitWatch(1.0, time.monotonic() - 2, time.time() - 2), notify, seen.append, timeout_s), \
        records, seen


def test_alert_is_recorded_shown_and_sent_as_json(tmp_path: Path) -> None:
    out = tmp_path / "got.json"
    alerts, records, seen = _alerts(tmp_path, f"cat > {out}")
    alert = alerts.raise_alert(records, "feed000001", "j", "RUNNABLE", ["node 1 to join"])
    alerts.close()
    assert json.loads(out.read_text()) == alert
    assert set(alert) == {"job_id", "name", "state", "since", "waited_s", "transit_timeout_s", "waiting_for",
                          "on_stuck", "action", "host", "line"}
    assert seen == [Note("warning", alert["line"])]
    assert records.get("feed000001").alerts == [alert] and [j.id for j in records.list(stuck=True)] == ["feed000001"]


def test_hanging_notify_is_killed_and_failing_one_only_warns(tmp_path: Path) -> None:
    marker = tmp_path / "still-here"
    alerts, records, seen = _alerts(tmp_path, f"sleep 30; touch {marker}", timeout_s=0.5)
    t0 = time.monotonic()
    alerts.raise_alert(records, "feed000001", "j", "PENDING", [])
    assert time.monotonic() - t0 < 5  # sent, not waited for
    alerts.close()
    assert time.monotonic() - t0 < 20 and not marker.exists()  # killed, its shell's children with it
    assert any(re.search(r"still ran after [0-9.]+s; killed", e.text) for e in seen if isinstance(e, Note))
    failing, records2, seen2 = _alerts(tmp_path / "b", "exit 3")
    failing.raise_alert(records2, "feed000001", "j", "PENDING", [])
    failing.close()
    assert any("exited with status 3" in e.text for e in seen2 if isinstance(e, Note))


def test_a_job_that_ended_waits_for_notify_briefly_not_its_whole_timeout(tmp_path: Path) -> None:
    """With a notify timeout of 100 s, a notify command still running when the job ends gets CLOSE_WAIT_S more,
    then is killed (its process group with it): the job's end is not held up for the timeout."""
    from mnp.coordinator.alerts import CLOSE_WAIT_S

    marker = tmp_path / "still-here"
    alerts, records, seen = _alerts(tmp_path, f"sleep 60; touch {marker}", timeout_s=100.0)
    alerts.raise_alert(records, "feed000001", "j", "RUNNABLE", ["node 1 to join"])
    pid = alerts.running[0].proc.pid
    t0 = time.monotonic()
    alerts.close()
    waited = time.monotonic() - t0
    assert CLOSE_WAIT_S <= waited < 50  # generous: the point is 2 s rather than the 100 s timeout
    assert not alerts.running and not Path(f"/proc/{pid}").exists() and not marker.exists()
    assert any("killed" in e.text for e in seen if isinstance(e, Note))
