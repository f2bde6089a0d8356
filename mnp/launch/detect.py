"""Which MPI a job's program uses (``mpi: auto``), and where that MPI is installed.

Open MPI is ``libmpi.so.40``, MPICH ``libmpi.so.12``. A Python program is judged by its interpreter's
environment (the MPI wheel installed there, ``<prefix>/lib``, which is what mpi4py loads); a compiled program by
the library ``ldd`` resolves for it. The prefix is where the MPI's own launcher is looked for (``<prefix>/bin``).
Unknown means MPICH, mnp's default.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MpiInfo", "detect_mpi", "launcher_major"]


@dataclass(frozen=True)
class MpiInfo:
    family: str  # "mpich" | "openmpi"
    why: str
    prefix: Path | None = None  # the MPI installation (its bin/ has mpirun or mpiexec)


def _family(lib: str) -> str | None:
    return "openmpi" if ".so.40" in lib else "mpich" if ".so.12" in lib else None


def _prefix(libdir: Path) -> Path:
    """``<prefix>/lib[/<multiarch>]`` -> ``<prefix>``; Debian's ``/usr/lib/x86_64-linux-gnu`` -> ``/usr``."""
    p = libdir.resolve()
    while p.name != "lib" and p.parent != p:
        p = p.parent
    return p.parent if p.name == "lib" else libdir


def detect_mpi(argv: list[str], path: str | None = None) -> MpiInfo:
    exe = shutil.which(argv[0], path=path or os.environ.get("PATH")) if argv else None
    if exe is None:
        return MpiInfo("mpich", f"auto: {argv[0] if argv else '?'} not found here; assuming MPICH")
    p = Path(exe)
    if p.name.startswith("python"):
        prefix = p.parent.parent  # <prefix>/bin/python (a venv or an installation)
        for lib in sorted((prefix / "lib").glob("libmpi.so.*")):
            fam = _family(lib.name)
            if fam:
                return MpiInfo(fam, f"auto: {p} has {fam}'s {lib.name} in {prefix / 'lib'}", prefix)
        return MpiInfo("mpich", f"auto: no MPI library next to {p}; assuming MPICH")
    try:
        out = subprocess.run(["ldd", exe], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    m = re.search(r"(libmpi\.so\.\d+)\s*=>\s*(\S+)", out)
    if m and _family(m.group(1)):
        fam = _family(m.group(1))
        assert fam is not None
        return MpiInfo(fam, f"auto: {exe} links {m.group(2)}", _prefix(Path(m.group(2)).parent))
    return MpiInfo("mpich", f"auto: {exe} links no known libmpi; assuming MPICH")


def launcher_major(launcher: str) -> int | None:
    """The major version an Open MPI ``mpirun`` reports (4 and 5 take different options)."""
    try:
        out = subprocess.run([launcher, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"Open MPI\)?\s+(\d+)\.", out)
    return int(m.group(1)) if m else None
