"""What ``mnp doctor`` found: :class:`Check` verdicts, the :class:`DoctorReport` holding them, and its text form.

:func:`render` returns the text; printing it is the command's business (:mod:`mnp.cli.doctor`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mnp.doctor.matrix import GRID_MAX_NODES, latency_text

__all__ = ["Check", "DoctorReport", "one_line", "render"]


@dataclass
class Check:
    """One verdict. ``warn``: a failure that does not stop a launch (slow pairs)."""

    name: str
    ok: bool
    detail: str
    warn: bool = False
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "warn": self.warn, "detail": self.detail, "data": self.data}


@dataclass
class DoctorReport:
    checks: list[Check]
    probe: dict[str, Any] | None = None  # the probe's own output (None when it did not run)
    job_id: str | None = None
    nodes: list[dict[str, Any]] = field(default_factory=list)  # index, hostname, address (from the launch)
    wall_s: float = 0.0
    interrupted: int | None = None  # the exit status when Ctrl-C or a signal stopped the probe (130, 143...)

    @property
    def ok(self) -> bool:
        """False when a launch would fail: any failed check except those that only warn."""
        return all(c.ok or c.warn for c in self.checks)

    @property
    def exit_code(self) -> int:
        """The command's exit status: the signal's when the probe was stopped, else 0 when ok, else 1."""
        return self.interrupted or (0 if self.ok else 1)

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    @property
    def latency_pairs(self) -> list[dict[str, Any]]:
        """The latency check's pairs (nodes, us, fastest tenth, band, ceiling, judged), where it has them."""
        c = self.check("latency")
        return list(c.data.get("pairs") or []) if c is not None else []

    def to_json(self) -> dict[str, Any]:
        p = self.probe or {}
        clock = p.get("clock") or []
        nodes = [{**(self.nodes[i] if i < len(self.nodes) else {"index": i}), **facts,
                  **(clock[i] if i < len(clock) else {})} for i, facts in enumerate(p.get("nodes", []))]
        return {"ok": self.ok, "job_id": self.job_id, "wall_s": round(self.wall_s, 3), "nodes": nodes,
                "checks": [c.to_json() for c in self.checks], "latency_us": p.get("latency_us"),
                "first_ms": p.get("first_ms"), "remeasured": p.get("remeasured"), "pairs": p.get("pairs")}


def one_line(text: str) -> str:
    """A message as one line (a check's detail is one line of the text report)."""
    return " ".join(text.split())


def render(report: DoctorReport, grid_max: int = GRID_MAX_NODES) -> str:
    """One line per check (OK / FAIL / WARN), then the latency matrix in microseconds: whole up to ``grid_max``
    nodes, else its summary and the slowest pairs (:mod:`mnp.doctor.matrix`)."""
    lines = []
    probe = report.probe or {}
    if report.job_id:
        n = len(probe.get("nodes", [])) or len(report.nodes)
        lines.append(f"mnp doctor: {n} node(s), probe job {report.job_id}, {report.wall_s:.2f} s")
    width = max(len(c.name) for c in report.checks)
    for c in report.checks:
        mark = "OK" if c.ok else ("WARN" if c.warn else "FAIL")
        lines.append(f"{mark:<5} {c.name:<{width}}  {c.detail}")
    lines += latency_text(probe, report.latency_pairs, grid_max)
    failed = [c.name for c in report.checks if not c.ok and not c.warn]
    lines.append("result: OK: a launch should work" if report.ok else
                 f"result: FAIL: a launch would fail ({', '.join(failed)})")
    return "\n".join(lines)
