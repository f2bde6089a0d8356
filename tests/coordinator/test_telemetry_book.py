"""Telemetry on the coordinator: peaks, the bounded series, the rate limit, the /dev/shm advice thresholds and the
status lines; the message's checks; the engine keeping what nodes send. No sockets, no processes, no root."""

from __future__ import annotations

import pytest

from mnp.control import messages as m
from mnp.coordinator import telemetry as tm
from mnp.coordinator.engine import JobEngine, Timing
from mnp.coordinator.telemetry import MAX_POINTS, NodeTelemetry, TelemetryBook, shm_advice, status_lines

pytestmark = pytest.mark.noroot

MiB = 1 << 20


def _t(cpu: float = 0.0, rss: int = 0, shm: int = 0, cpu_s: float = 0.0, cost: float = 0.001) -> m.Telemetry:
    return m.Telemetry(cpu, cpu_s, rss, shm, 1, cost)


def test_peaks_cpu_seconds_and_cost() -> None:
    n = NodeTelemetry()
    for i, (cpu, rss, shm) in enumerate([(50, 10 * MiB, 0), (180, 5 * MiB, 32 * MiB), (20, 70 * MiB, 1 * MiB)]):
        assert n.add(float(i), _t(cpu, rss, shm, cpu_s=i + 0.5, cost=0.001 * (i + 1)))
    info = n.to_info()
    assert (info["peak_cpu_pct"], info["peak_rss"], info["peak_shm"]) == (180, 70 * MiB, 32 * MiB)
    assert info["cpu_s"] == 2.5 and info["samples"] == 3 and info["dropped"] == 0
    assert info["sample_ms"] == {"mean": 2.0, "max": 3.0}
    assert info["series"] == [[0.0, 50, 10 * MiB, 0], [1.0, 180, 5 * MiB, 32 * MiB], [2.0, 20, 70 * MiB, 1 * MiB]]


def test_a_sample_too_soon_after_the_last_is_dropped() -> None:
    n = NodeTelemetry()
    assert n.add(1.0, _t(10))
    assert not n.add(1.2, _t(999))  # a node sending faster than allowed
    assert n.add(2.0, _t(20))
    info = n.to_info()
    assert info["samples"] == 2 and info["dropped"] == 1 and info["peak_cpu_pct"] == 20


@pytest.mark.parametrize("count", [1, MAX_POINTS - 1, MAX_POINTS, MAX_POINTS + 1, 1000, 5000])
def test_the_series_stays_bounded_covers_the_run_and_keeps_the_peak(count: int) -> None:
    n = NodeTelemetry()
    spike = count * 2 // 3
    for i in range(count):
        n.add(float(i), _t(cpu=500.0 if i == spike else 1.0, rss=i * 1000, shm=7 if i == 0 else 0))
    series = n.to_info()["series"]
    assert 1 <= len(series) <= MAX_POINTS
    if count >= MAX_POINTS:
        assert len(series) >= MAX_POINTS // 2  # halved when full, never thinner
    times = [p[0] for p in series]
    assert times == sorted(times) and times[0] == 0.0  # from the first sample on
    assert max(p[1] for p in series) == 500.0  # the one-sample spike survives every merge
    assert max(p[2] for p in series) == (count - 1) * 1000  # so does the last, largest memory figure
    assert series[0][3] == 7


def test_book_keys_nodes_as_strings_and_info_is_off_when_disabled() -> None:
    book = TelemetryBook()
    book.add(1, 1.0, _t(10, 5, 6))
    book.add(0, 1.0, _t(20, 7, 8))
    info = tm.telemetry_info(book, 1.0, True, {})
    assert info is not None and list(info["nodes"]) == ["0", "1"] and "advice" not in info
    assert info["shm_counted"] == "the node's own /dev/shm (all used)"
    assert tm.telemetry_info(book, 0.0, True, {}) is None


def _shm(total: int, declared: int | None, need: int | None = None) -> dict[str, object]:
    return {"total": total, "free": total, "need": need or declared or MiB, "declared": declared}


@pytest.mark.parametrize("peak_mib, advised", [(35, False), (36, True), (40, True)])
def test_too_small_when_the_peak_is_within_ten_percent_of_shm_size(peak_mib: int, advised: bool) -> None:
    shm = {"0": _shm(40 * MiB, 40 * MiB), "1": _shm(40 * MiB, 40 * MiB)}
    line = shm_advice({0: 1 * MiB, 1: peak_mib * MiB}, shm)
    if not advised:
        assert line is None
        return
    assert line is not None and "\n" not in line
    assert line.startswith(f"/dev/shm peaked at {peak_mib} MiB of 40 MiB (the job's shm_size) on node 1: ")
    assert line.endswith(f"set shm_size: {2 * peak_mib}Mi (AWS Batch: linuxParameters.sharedMemorySize: "
                         f"{2 * peak_mib})")


def test_too_small_without_shm_size_compares_with_the_nodes_own_size_and_names_the_first_fullest() -> None:
    shm = {"0": _shm(64 * MiB, None), "1": _shm(64 * MiB, None)}
    line = shm_advice({0: 60 * MiB, 1: 60 * MiB}, shm)
    assert line is not None
    assert line.startswith("/dev/shm peaked at 60 MiB of 64 MiB (its /dev/shm) on node 0 (and 1 more node(s))")
    # MPI's part larger than shm_size: the node got the need, and that is what the peak is held against
    assert shm_advice({0: 30 * MiB}, {"0": _shm(64 * MiB, 8 * MiB, need=32 * MiB)}) is not None
    assert shm_advice({0: 20 * MiB}, {"0": _shm(64 * MiB, 8 * MiB, need=32 * MiB)}) is None


@pytest.mark.parametrize("declared_mib, peak_mib, advised", [
    (1024, 50, True),     # under 10% of an explicit 1 GiB
    (1024, 103, False),   # just over 10%
    (257, 1, True),       # over 256 MiB, nearly unused
    (256, 1, False),      # 256 MiB is not "far too big"
])
def test_far_too_big_only_for_an_explicit_size_over_256_mib(declared_mib: int, peak_mib: int,
                                                          advised: bool) -> None:
    shm = {"0": _shm(declared_mib * MiB, declared_mib * MiB), "1": _shm(declared_mib * MiB, declared_mib * MiB)}
    line = shm_advice({0: peak_mib * MiB, 1: 0}, shm)
    if advised:
        assert line is not None and line.startswith(f"shm_size {declared_mib // 1024 or declared_mib}")
        assert f"peak {peak_mib} MiB, node 0" in line and f"shm_size: {max(64, 2 * peak_mib)}Mi" in line
    else:
        assert line is None


def test_no_far_too_big_claim_without_an_explicit_size_or_with_a_silent_node() -> None:
    assert shm_advice({0: 0, 1: 0}, {"0": _shm(8 << 30, None), "1": _shm(8 << 30, None)}) is None
    big = {"0": _shm(1 << 30, 1 << 30), "1": _shm(1 << 30, 1 << 30)}
    assert shm_advice({0: 0}, big) is None  # node 1 sent nothing: what it used is not known
    assert shm_advice({}, big) is None


def test_status_lines() -> None:
    book = TelemetryBook()
    book.add(0, 1.0, _t(151.2, 67 * MiB, 37 * MiB, cpu_s=2.25))
    shm = {"0": _shm(40 * MiB, 40 * MiB)}
    info = tm.telemetry_info(book, 1.0, False, shm)
    lines = status_lines(info, shm)
    assert lines[0] == "telemetry every 1s; /dev/shm counted: the job's files in the host's /dev/shm"
    assert lines[1] == ("  node 0: cpu peak 151% (2.2 cpu-s), memory peak 67 MiB, /dev/shm peak 37 MiB of 40 MiB, "
                        "1 sample(s)")
    assert lines[2].startswith("advice    /dev/shm peaked at 37 MiB of 40 MiB")
    assert status_lines(None) == [] and status_lines({}) == []


def test_the_message_refuses_negative_or_missing_figures() -> None:
    good = m.encode(_t(12.5, 3, 4, 1.0))
    assert m.decode_to_coordinator(good) == _t(12.5, 3, 4, 1.0)
    for bad in (b'{"t":"telemetry","cpu_pct":1,"cpu_s":1,"rss":-1,"shm":0,"procs":1}',
                b'{"t":"telemetry","cpu_pct":-5,"cpu_s":1,"rss":1,"shm":0,"procs":1}',
                b'{"t":"telemetry","cpu_pct":1,"cpu_s":1,"rss":1,"procs":1}',
                b'{"t":"telemetry","cpu_pct":1,"cpu_s":1,"rss":"1","shm":0,"procs":1}'):
        assert isinstance(m.decode_to_coordinator(bad), m.InvalidMessage), bad
    assert isinstance(m.decode_to_agent(good), m.InvalidMessage)  # the coordinator never sends one


def test_the_engine_keeps_each_nodes_samples_by_its_own_clock() -> None:
    e = JobEngine(2, Timing(), now=100.0)
    assert e.on_message(1, _t(40, 5 * MiB), None, 101.0) == []
    assert e.on_message(1, _t(90, 9 * MiB), None, 102.0) == []
    assert e.on_message(0, _t(10, 1 * MiB), None, 102.5) == []
    assert e.on_message(1, _t(99, 1), None, 102.1) == []  # too soon: dropped
    n1 = e.telemetry.nodes[1].to_info()
    assert n1["peak_cpu_pct"] == 90 and n1["peak_rss"] == 9 * MiB and n1["dropped"] == 1
    assert [p[0] for p in n1["series"]] == [1.0, 2.0]
    assert e.on_message(5, _t(1), None, 103.0)[0].kind == "security"  # type: ignore[attr-defined]
    assert 5 not in e.telemetry.nodes


def test_the_record_gets_new_samples_at_most_every_few_seconds() -> None:
    book = TelemetryBook()
    assert not book.write_due(0.0)  # nothing came
    book.add(0, 1.0, _t(1))
    assert book.write_due(1.0)
    book.add(0, 2.0, _t(2))
    assert not book.write_due(2.0, every=5)  # too soon after the last write
    assert book.write_due(6.0, every=5)
    assert not book.write_due(20.0, every=5)  # written, and nothing new since
