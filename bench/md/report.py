"""Text for people (GROMACS-like) and one ``MD-JSON {...}`` line for programs, from a run's record."""

from __future__ import annotations

import json
from typing import Any

from bench.md.engine import SECTIONS


def text_lines(r: dict[str, Any]) -> list[str]:
    d = r["decomposition"]
    rf = (f", reaction field q=+-{r['charge']:g} eps_r {r['eps_r']:g} eps_rf {r['eps_rf'] or 'inf'}" if r["rf"]
          else ", no charges")
    out = [(f"MD: {r['atoms']} atoms, fcc rho* {r['density']} {r['cells']}^3 cells, r_c {r['rc']} (LJ shifted to "
            f"zero{rf}), buffered Verlet list: skin {r['skin']}, nstlist {r['nstlist']}"),
           (f"    {r['ranks']} rank(s) on {r['nodes']} node(s), domain decomposition {d[0]}x{d[1]}x{d[2]}, "
            f"velocity Verlet dt {r['dt_tau']} tau, {r['steps']} steps, transport {r.get('transport')}"),
           (f"Step-0 E_pair/atom, LJ unshifted (LAMMPS in.lj's E_pair): {r['e0_lj_unshifted_per_atom']:.7f}"
            f"   (in.lj: {r['lammps_in_lj_epair']:.7f})"),
           f"{'Step':>8} {'Temp':>10} {'LJ(shift)':>12} {'RF':>12} {'Potential':>12} {'Total':>12}   (per atom)"]
    for e in r["thermo"]:
        out.append(f"{e['step']:8d} {e['temp']:10.5f} {e['lj']:12.7f} {e['rf']:12.7f} {e['pot']:12.7f} "
                   f"{e['total']:12.7f}")
    out += [(f"Conserved-energy drift: {r['drift_rel']:.3e} relative over {r['steps']} steps, "
             f"{r['drift_per_atom_per_tau']:.3e} per atom per tau (fit), max |dE| "
             f"{r['drift_max_abs_per_atom']:.3e} per atom"), "",
            "     R E A L   T I M E   A C C O U N T I N G   (mean over ranks)", "",
            f" {'Activity':<20} {'Wall t (s)':>11} {'(%)':>7}"]
    wall = r["wall_s"]
    for k in SECTIONS:
        s = r["timings_mean_s"][k]
        out.append(f" {k:<20} {s:11.3f} {100 * s / wall:7.1f}")
    out += [f" {'Total':<20} {wall:11.3f} {100.0:7.1f}", "",
            f"{'':15}{'(ns/day)':>12}{'(hour/ns)':>12}",
            f"{'Performance:':<15}{r['ns_per_day']:12.3f}{r['hour_per_ns']:12.3f}",
            (f"   ({r['ns_unit']}; dt = {r['dt_tau']} tau) {r['steps_per_s']:.2f} steps/s, "
             f"{r['atom_steps_per_s'] / 1e6:.3f} M atom-steps/s, communication {100 * r['comm_share']:.1f}% "
             f"of the wall time; setup incl. JIT {r['init_s']:.2f} s (untimed)")]
    return out


def json_line(r: dict[str, Any]) -> str:
    return "MD-JSON " + json.dumps(r, separators=(",", ":"))


def parse_json_lines(text: str) -> list[dict[str, Any]]:
    """Every MD-JSON record in ``text`` (e.g. mnp's prefixed rank output)."""
    return [json.loads(line.split("MD-JSON ", 1)[1]) for line in text.splitlines() if "MD-JSON " in line]
