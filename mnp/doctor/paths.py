"""The doctor's transport truth: which path each measured pair took, and whether its latency is in that path's band.

Each pair the probe measured (:mod:`mnp.doctor.probe`) is judged on its own evidence:

- its *expected* path (:func:`mnp.fabric.bands.expected_path`): shared memory within a node, else the transport
  a launch would choose (:func:`mnp.fabric.decide.decide`), TCP being ``tcp-host`` between nodes of one machine
  (same ``boot_id``) and ``tcp`` between machines;
- its *observed* path, from the packet counters its initiator read around the timed round trips
  (:func:`mnp.fabric.bands.observed_path`) -- TCP where shared memory or EFA was expected is a failure with its
  reason (``paths``);
- its latency against the expected path's band (:mod:`mnp.fabric.bands`), never against the other pairs: a
  cluster whose pairs are all slow fails (``latency``), naming the band. What is judged is the pair's fastest
  tenth of round trips (its 10th percentile, of 30 to 400): a path that works delivers that many within its band
  even on a machine where other work preempts the ranks most of the time (seen here: a shared-memory pair with a
  median of 688 us and a 25th percentile of 76 us on two cores other jobs kept busy), while a slow path -- a delay
  on the link, a congested or shaped one -- makes every round trip slow. Pairs slower than
  :data:`~mnp.doctor.probe_data.SLOW_FACTOR` x the median but within their band only warn.

A pair whose two ranks had fewer than two CPUs between them on one machine (node 0's shared-memory pair on a node
of one CPU), or were on the same CPU in at least half of its round trips (ranks of different nodes bound to one
core, or other work crowding them onto one), may have measured the scheduler, not the path: when it is over its
band its latency is not judged, and the check says so. (Within its band it is judged: sharing a CPU only slows a
pair, so the path is at least that fast.)
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from mnp.doctor.probe_data import slow_pairs
from mnp.doctor.report import Check
from mnp.fabric.bands import Band, PathVerdict, bands, expected_path, judge_path, observed_path
from mnp.fabric.decide import parse_cpu_list

__all__ = ["PairRow", "judge_pairs", "latency_check", "paths_check"]


@dataclass(frozen=True)
class PairRow:
    a: int
    b: int
    us: float  # median half round trip
    p10: float  # 10th percentile: what is judged against the band
    band: Band
    path: PathVerdict
    crowded: str | None  # its ranks shared a CPU (why), else None

    @property
    def judged(self) -> bool:
        """Crowding only slows a pair: a crowded pair within its band still shows the path is that fast; over
        it, the figure may be the scheduler's, and is not judged."""
        return self.crowded is None or self.p10 <= self.band.ceiling

    @property
    def name(self) -> str:
        return f"node {self.a} (2 ranks)" if self.a == self.b else f"node {self.a}-{self.b}"

    @property
    def slow(self) -> bool:
        return self.crowded is None and self.p10 > self.band.ceiling


def judge_pairs(probe: dict[str, Any], inter_node: str, iface: str | None,
                table: dict[str, Band] | None = None) -> list[PairRow]:
    """Every measured pair with its expected path, observed path, band and whether it was oversubscribed."""
    table = table or bands()
    ranks = probe.get("ranks") or []
    nodes = probe.get("nodes") or []
    rows = []
    for p in probe.get("pairs") or []:
        a, b = p["nodes"]
        ri, rj = p["ranks"]
        fi = ranks[ri] if ri < len(ranks) else (nodes[a] if a < len(nodes) else {})
        fj = ranks[rj] if rj < len(ranks) else (nodes[b] if b < len(nodes) else {})
        same_machine = bool(fi.get("boot_id")) and fi.get("boot_id") == fj.get("boot_id")
        exp = expected_path(a == b, same_machine, inter_node)
        if "deltas" in p:
            obs, evidence = observed_path(p["deltas"], int(p.get("trips") or 0))
        else:
            obs, evidence = "unknown", ""
        verdict = judge_path(exp, obs, evidence, iface if a != b else None)
        crowded = None
        if same_machine:
            cpus = parse_cpu_list(str(fi.get("cpu_list") or "")) | parse_cpu_list(str(fj.get("cpu_list") or ""))
            trips, same = int(p.get("trips") or 0), int(p.get("same_cpu") or 0)
            if 0 < len(cpus) < 2 and a == b:
                crowded = f"its 2 ranks shared node {a}'s 1 CPU"
            elif 0 < len(cpus) < 2:
                crowded = (f"the ranks of nodes {a} and {b} may both use only CPU {min(cpus)}: bound to the same "
                           "core")
            elif trips and 2 * same >= trips:
                crowded = (f"its 2 ranks were on one CPU in {same} of {trips} round trips: bound to the same core, "
                           "or crowded together by other work")
        rows.append(PairRow(a, b, float(p["us"]), float(p.get("p10_us", p["us"])), table[exp], verdict, crowded))
    return rows


def paths_check(rows: list[PairRow]) -> Check:
    """FAIL when a pair took another path than expected (TCP where shared memory or EFA was expected...)."""
    data = {"pairs": [{"nodes": [r.a, r.b], "expected": r.path.expected, "observed": r.path.observed,
                       "ok": r.path.ok, "why": r.path.why} for r in rows]}
    if not rows:
        return Check("paths", True, "one node, one rank: no pair to measure", data=data)
    bad = [r for r in rows if not r.path.ok]
    if bad:
        more = f" (and {len(bad) - 1} more pair(s))" if len(bad) > 1 else ""
        return Check("paths", False, f"{bad[0].name}: {bad[0].path.why}{more}", data=data)
    groups: dict[str, list[PairRow]] = {}
    for r in rows:
        groups.setdefault(r.path.observed, []).append(r)
    parts = []
    for obs, members in groups.items():
        label = {"shm": "shared memory", "efa": "EFA", "none": "on no network interface", "unknown": "not checked"}
        what = f"TCP over {obs[4:]}" if obs.startswith("tcp:") else label.get(obs, obs)
        parts.append(f"{len(members)} pair(s) {what} ({members[0].name}: {members[0].path.evidence})")
    return Check("paths", True, "every pair on its expected path: " + "; ".join(parts), data=data)


def _us(v: float) -> str:
    return f"{v:,.0f} us" if v >= 100 else f"{v:.1f} us"


def latency_check(rows: list[PairRow], matrix: list[list[float | None]], factor: float,
                  remeasured: list[Any] | None = None) -> Check:
    """FAIL when pairs are slower than their path's band; WARN for pairs slow against the others only; and the
    pairs whose ranks shared a CPU are named, not judged."""
    again = remeasured or []
    note = f" ({len(again)} measured twice)" if again else ""
    judged = [r for r in rows if r.judged]
    crowded = [r for r in rows if not r.judged]
    skipped = "; not judged: " + ", ".join(f"{r.name} ({r.crowded}, {_us(r.us)})" for r in crowded[:2]) + \
        (f", and {len(crowded) - 2} more pair(s) whose ranks shared a CPU" if len(crowded) > 2 else "") \
        if crowded else ""
    data: dict[str, Any] = {"pairs": [{"nodes": [r.a, r.b], "us": r.us, "p10_us": r.p10, "band": r.band.path,
                                       "ceiling_us": r.band.ceiling, "judged": r.judged,
                                       "slow": r.slow} for r in rows], "remeasured": again}
    if not rows:
        return Check("latency", True, "one node, one rank: no pairs to measure", warn=True, data=data)
    if not judged:
        return Check("latency", True, "not judged: every probe pair was oversubscribed" + skipped.split(";", 1)[1],
                     warn=True, data=data)
    slow = [r for r in judged if r.slow]
    if slow:
        by_band: dict[str, list[PairRow]] = {}
        for r in judged:
            by_band.setdefault(r.band.path, []).append(r)
        worst = max(slow, key=lambda r: r.p10 / r.band.ceiling)
        members = by_band[worst.band.path]
        bad = [r for r in members if r.slow]
        med = statistics.median(r.us for r in bad)
        head = f"all {len(members)}" if len(bad) == len(members) else f"{len(bad)} of {len(members)}"
        others = len(slow) - len(bad)
        return Check("latency", False, f"{head} pair(s) slower than the {worst.band.describe()}, even their fastest "
                     f"tenth of round trips: median {_us(med)}, slowest {worst.name} {_us(worst.us)} (fastest "
                     f"tenth {_us(worst.p10)}){note}"
                     + (f"; and {others} pair(s) beyond other bands" if others else "") + skipped, data=data)
    inter = [r for r in judged if r.a != r.b]
    rel = slow_pairs(matrix, factor)
    if rel:
        listed = ", ".join(f"{i}-{j} {_us(v)}" for i, j, v in sorted(rel, key=lambda s: -s[2])[:4])
        med = statistics.median(r.us for r in inter) if inter else 0.0
        return Check("latency", False, f"{len(rel)} of {len(inter)} pair(s) slower than {factor:g}x the median "
                     f"{_us(med)}, though within their band{note}: node {listed}" + skipped, warn=True, data=data)
    parts = []
    for path in ("shm", "tcp-host", "tcp", "efa"):
        members = [r for r in judged if r.band.path == path]
        if members:
            slowest = max(members, key=lambda r: r.us)
            parts.append(f"{len(members)} {path} pair(s) median {_us(statistics.median(r.us for r in members))} "
                         f"(band <= {members[0].band.ceiling:g} us; slowest {slowest.name} {_us(slowest.us)})")
    return Check("latency", True, "within their bands: " + "; ".join(parts) + note + skipped, warn=True, data=data)
