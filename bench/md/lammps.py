"""LAMMPS's ``in.lj`` benchmark as an mnp job, the yardstick of ``bench.md``: the same 32,000-atom fcc LJ liquid
(rho* 0.8442, r_c 2.5, skin 0.3, list rebuilt every 20 steps unchecked, NVE, dt 0.005, T 1.44), run by Debian's
``lmp`` (built with Open MPI: the job's ``mpi`` is ``auto``).

Read from rank 0's output: timesteps/s from ``Loop time of T on N procs for S steps`` (the timed loop, without
set-up, as ``bench.md``'s wall time), step 0's E_pair (the lattice energy bench.md must reproduce), the list's
pair count (``Total # of neighbors``, a half list as bench.md's), the time breakdown (``Pair``, ``Neigh``) and
``% CPU use`` (CPU time / wall time of the loop: below 100 % the process waited for a core).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

IN_LJ = """units lj
atom_style atomic
lattice fcc 0.8442
region box block 0 {cells} 0 {cells} 0 {cells}
create_box 1 box
create_atoms 1 box
mass 1 1.0
velocity all create 1.44 87287 loop geom
pair_style lj/cut 2.5
pair_coeff 1 1 1.0 1.0 2.5
neighbor 0.3 bin
neigh_modify delay 0 every 20 check no
fix 1 all nve
thermo 100
run {steps}
"""


def lmp() -> str | None:
    return shutil.which("lmp")


def write_input(where: Path, cells: int, steps: int) -> Path:
    path = where / f"in.lj-{cells}-{steps}"
    path.write_text(IN_LJ.format(cells=cells, steps=steps))
    return path


def command(exe: str, inp: Path) -> list[str]:
    return [exe, "-in", str(inp), "-log", "none", "-nocite"]


def parse(lines: list[str]) -> dict[str, Any]:
    """The figures of one run's output; ValueError if it has no ``Loop time`` line."""
    text = "\n".join(lines)
    m = re.search(r"Loop time of ([\d.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms", text)
    if not m:
        raise ValueError(f"lammps: no 'Loop time' line in its output: {lines[-5:]}")
    step0 = re.search(r"^\s*0\s+\S+\s+(-?\d+\.\d+)", text, re.M)
    nbr = re.search(r"Total # of neighbors = (\d+)", text)
    cpu = re.search(r"^([\d.]+)% CPU use", text, re.M)
    sections = {k: float(v) for k, v in re.findall(r"^(Pair|Neigh|Comm|Modify)\s+\|\s+\S+\s+\|\s+([\d.eE+-]+)",
                                                     text, re.M)}
    return {"steps_per_s": int(m.group(3)) / float(m.group(1)), "ranks": int(m.group(2)),
            "steps": int(m.group(3)), "atoms": int(m.group(4)), "wall_s": float(m.group(1)),
            "epair0": float(step0.group(1)) if step0 else None, "pairs": int(nbr.group(1)) if nbr else None,
            "sections_s": sections, "cpu_use": float(cpu.group(1)) / 100 if cpu else None}
