"""``mnp doctor``'s library: a probe job over mnp's own launch, and the analysis of what it found.

- :mod:`mnp.doctor.run`: :func:`run_doctor` launches the probe and returns a :class:`DoctorReport`;
- :mod:`mnp.doctor.probe`: the probe program, run as a rank (``python -m mnp.doctor.probe``);
- :mod:`mnp.doctor.probe_data`: its output line, as both sides read it;
- :mod:`mnp.doctor.analyse`: facts in, checks out (the fabric's through :func:`mnp.fabric.decide.decide`);
- :mod:`mnp.doctor.paths`: each pair's path (from packet counters) and latency against its path's band;
- :mod:`mnp.doctor.report`: the checks, the report and its text form.

The command (:mod:`mnp.cli.doctor`) parses, calls :func:`run_doctor` and prints; nothing here prints or sees Click.
This package's import never loads :mod:`mnp.doctor.probe`, which ``python -m`` runs as ``__main__``.
"""

from mnp.doctor.analyse import SKEW_LIMIT_S, SLOW_CONNECT_MS, analyse
from mnp.doctor.probe_data import PREFIX, SLOW_FACTOR, read_probe, slow_pairs
from mnp.doctor.report import Check, DoctorReport, render
from mnp.doctor.run import DoctorRequest, run_doctor

__all__ = [
    "PREFIX",
    "SKEW_LIMIT_S",
    "SLOW_CONNECT_MS",
    "SLOW_FACTOR",
    "Check",
    "DoctorReport",
    "DoctorRequest",
    "analyse",
    "read_probe",
    "render",
    "run_doctor",
    "slow_pairs",
]
