"""Telemetry on the coordinator: each node's samples (:class:`~mnp.control.messages.Telemetry`) kept as peaks and a
short series, the record's ``info.telemetry``, the lines ``mnp status`` shows, and one line of /dev/shm advice.

What a node samples is said in :mod:`mnp.node.telemetry`. Here, per node: the peaks (CPU %, private resident
bytes, /dev/shm bytes), CPU seconds, the sample count, the cost of a sample pass (mean and max), and a series of
at most :data:`MAX_POINTS` points ``[t, cpu_pct, rss, shm]`` (``t``: seconds since the coordinator started the
job). A long job's series is halved when full, each pair of points merged into one that keeps the larger of each
figure and the earlier time, so a peak is never averaged away and the whole run stays covered.

While the job runs the record gets what came so far every :data:`LIVE_WRITE_S` seconds (``mnp status`` of a
running job shows it); the end of each attempt writes it last, with the advice. A node may send at most one
sample a second: one that comes sooner after the previous is dropped (counted in
``dropped``), so a misbehaving node cannot grow the coordinator's work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mnp.control import messages as m
from mnp.fabric.shm import SHM_DOCKER_DEFAULT, fmt_bytes

__all__ = ["MAX_POINTS", "MIN_GAP_S", "NodeTelemetry", "TelemetryBook", "shm_advice", "status_lines", "telemetry_info"]

MAX_POINTS = 120
MIN_GAP_S = 0.5  # samples closer than this from one node are dropped (they are due once a second at most)
NEAR_FULL = 0.9  # a /dev/shm peak at or above this share of its size: too small
FAR_BELOW = 0.1  # a peak below this share of an explicit shm_size ...
BIG_SHM = 256 << 20  # ... larger than this: far too big
MiB = 1 << 20
LIVE_WRITE_S = 5.0  # while a job runs, its record gets the telemetry so far at most this often


@dataclass
class NodeTelemetry:
    peak_cpu_pct: float = 0.0
    peak_rss: int = 0
    peak_shm: int = 0
    cpu_s: float = 0.0
    samples: int = 0
    dropped: int = 0
    cost_sum: float = 0.0
    cost_max: float = 0.0
    last_t: float | None = None
    stride: int = 1  # samples per point of the series
    series: list[list[float]] = field(default_factory=list)
    bucket: list[float] | None = None  # the point being filled
    in_bucket: int = 0

    def add(self, t: float, s: m.Telemetry) -> bool:
        """Take one sample at ``t``; False when it came too soon after the previous one (dropped)."""
        if self.last_t is not None and t - self.last_t < MIN_GAP_S:
            self.dropped += 1
            return False
        self.last_t = t
        self.samples += 1
        self.peak_cpu_pct = max(self.peak_cpu_pct, s.cpu_pct)
        self.peak_rss = max(self.peak_rss, s.rss)
        self.peak_shm = max(self.peak_shm, s.shm)
        self.cpu_s = max(self.cpu_s, s.cpu_s)
        self.cost_sum += s.cost_s
        self.cost_max = max(self.cost_max, s.cost_s)
        point = [round(t, 2), s.cpu_pct, s.rss, s.shm]
        self.bucket = point if self.bucket is None else _merge(self.bucket, point)
        self.in_bucket += 1
        if self.in_bucket >= self.stride:
            self.series.append(self.bucket)
            self.bucket, self.in_bucket = None, 0
            if len(self.series) >= MAX_POINTS:
                self.series = [_merge(*self.series[i:i + 2]) if i + 1 < len(self.series) else self.series[i]
                               for i in range(0, len(self.series), 2)]
                self.stride *= 2
        return True

    def points(self) -> list[list[float]]:
        """The series with the point being filled, at most :data:`MAX_POINTS`."""
        out = self.series + ([self.bucket] if self.bucket is not None else [])
        return out[-MAX_POINTS:]

    def to_info(self) -> dict[str, Any]:
        mean = self.cost_sum / self.samples if self.samples else 0.0
        return {"peak_cpu_pct": self.peak_cpu_pct, "peak_rss": self.peak_rss, "peak_shm": self.peak_shm,
                "cpu_s": round(self.cpu_s, 3), "samples": self.samples, "dropped": self.dropped,
                "sample_ms": {"mean": round(mean * 1e3, 3), "max": round(self.cost_max * 1e3, 3)},
                "series_step": self.stride, "series": self.points()}


def _merge(a: list[float], b: list[float]) -> list[float]:
    """One point for two: the earlier time, the larger of each figure."""
    return [min(a[0], b[0]), *(max(x, y) for x, y in zip(a[1:], b[1:]))]


@dataclass
class TelemetryBook:
    """Every node's telemetry for one job (kept by the coordinator's engine)."""

    nodes: dict[int, NodeTelemetry] = field(default_factory=dict)
    changed_at: float | None = None  # ``t`` of the first sample not yet written to the record
    written_at: float = -1e9

    def add(self, node: int, t: float, s: m.Telemetry) -> bool:
        took = self.nodes.setdefault(node, NodeTelemetry()).add(t, s)
        if took and self.changed_at is None:
            self.changed_at = t
        return took

    def write_due(self, t: float, every: float = LIVE_WRITE_S) -> bool:
        """Whether the record should get what came in (while the job runs: at most every ``every`` seconds, and
        only when something came); True marks it written."""
        if self.changed_at is None or t - self.written_at < every:
            return False
        self.changed_at, self.written_at = None, t
        return True

    def to_info(self, interval_s: float, shm_counted: str) -> dict[str, Any]:
        """``info.telemetry`` of the job's record (nodes by their index as a string, as JSON keys are)."""
        return {"interval_s": interval_s, "shm_counted": shm_counted,
                "nodes": {str(i): t.to_info() for i, t in sorted(self.nodes.items())}}


def _shm_size(sh: dict[str, Any]) -> tuple[int, bool]:
    """(bytes a node's /dev/shm is sized at for the job, whether the user set it): ``shm_size`` as mnp applied it
    (at least MPI's part), else the node's /dev/shm as its agent found it."""
    if sh.get("declared"):
        return int(sh.get("need") or sh["declared"]), True
    return int(sh.get("total", 0)), False


def _suggest(peak: int) -> str:
    """A shm_size for a job that peaked at ``peak``: twice it in whole MiB, at least Docker's 64 MiB."""
    mib = max(SHM_DOCKER_DEFAULT // MiB, -(-2 * peak // MiB))
    return f"shm_size: {mib}Mi (AWS Batch: linuxParameters.sharedMemorySize: {mib})"


def shm_advice(peaks: dict[int, int], shm: dict[str, dict[str, Any]]) -> str | None:
    """One line when the /dev/shm peaks show the job's /dev/shm too small (a node's peak within 10% of its size)
    or far too big (every peak under 10% of an explicit shm_size over 256 MiB); else None.

    ``peaks``: node -> peak bytes; ``shm``: the record's ``info.shm`` (node -> total, need, declared, ...)."""
    tight: list[tuple[float, int, int, int, bool]] = []  # (share, -node, peak, size, declared)
    for node, peak in peaks.items():
        sh = shm.get(str(node))
        if not sh:
            continue
        size, declared = _shm_size(sh)
        if size > 0 and peak >= NEAR_FULL * size:
            tight.append((peak / size, -node, peak, size, declared))
    if tight:
        _, minus, peak, size, declared = max(tight)  # the fullest node; of equals, the first
        node = -minus
        what = "the job's shm_size" if declared else "its /dev/shm"
        more = f" (and {len(tight) - 1} more node(s))" if len(tight) > 1 else ""
        return (f"/dev/shm peaked at {fmt_bytes(peak)} of {fmt_bytes(size)} ({what}) on node {node}{more}: the "
                f"job nearly ran out; set {_suggest(peak)}")
    sizes = [_shm_size(sh) for sh in shm.values()]
    explicit = [s for s, given in sizes if given]
    if not peaks or not explicit or len(peaks) < len(shm):
        return None  # no explicit size, or a node that sent nothing: no claim about what the job used
    size = min(explicit)
    node, peak = max(peaks.items(), key=lambda kv: (kv[1], -kv[0]))
    if size > BIG_SHM and peak < FAR_BELOW * size:
        return (f"shm_size {fmt_bytes(size)} is far more than the job used in /dev/shm (peak {fmt_bytes(peak)}, "
                f"node {node}): {_suggest(peak)} would do")
    return None


def status_lines(tel: dict[str, Any] | None, shm: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """What ``mnp status`` shows of ``info.telemetry``: one line per node, then the advice, if any."""
    if not tel:
        return []
    out = [f"telemetry every {tel.get('interval_s', 1):g}s; /dev/shm counted: {tel.get('shm_counted', '?')}"]
    for node, t in sorted(tel.get("nodes", {}).items(), key=lambda kv: int(kv[0])):
        size = ""
        sh = (shm or {}).get(node)
        if sh:
            size = f" of {fmt_bytes(_shm_size(sh)[0])}"
        out.append(f"  node {node}: cpu peak {t['peak_cpu_pct']:.0f}% ({t['cpu_s']:.1f} cpu-s), memory peak "
                   f"{fmt_bytes(t['peak_rss'])}, /dev/shm peak {fmt_bytes(t['peak_shm'])}{size}, "
                   f"{t['samples']} sample(s)")
    if tel.get("advice"):
        out.append(f"advice    {tel['advice']}")
    return out


def telemetry_info(book: TelemetryBook, interval_s: float, shm_private: bool,
                   shm: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The record's ``info.telemetry`` at the end of an attempt, its ``advice`` included; None when it was off."""
    if interval_s <= 0:
        return None
    counted = "the node's own /dev/shm (all used)" if shm_private else "the job's files in the host's /dev/shm"
    info = book.to_info(interval_s, counted)
    advice = shm_advice({i: t.peak_shm for i, t in book.nodes.items() if t.samples}, shm)
    if advice:
        info["advice"] = advice
    return info
