"""Which MPI a job's program uses (``mpi: auto``), and where that MPI is installed.

Open MPI is ``libmpi.so.40``. ``libmpi.so.12`` is the MPICH ABI, which two families share: MPICH itself and
Intel MPI (the PyPI ``impi-rt`` wheel installs ``<prefix>/lib/libmpi.so.12`` just as the ``mpich`` wheel does).
They are told apart by the library's own version string, which only Intel's carries (``Intel(R) MPI Library``,
what ``MPI_Get_library_version`` returns): a memory-mapped search of the file, a few milliseconds for its 16 MiB.
Intel MPI is family ``impi``: its own transport variables (``I_MPI_FABRICS``, ``I_MPI_OFI_PROVIDER``), not MPICH's.

The program is found behind the wrappers people put in front of it (``env``, ``stdbuf``, ``numactl``, ``time``,
``timeout``, ``nice``, ``taskset``, ``chrt``, ``nohup``, ``setsid``, ``sh -c "..."``: :func:`program_of`). A Python
program is judged by its interpreter's environment (the MPI wheel installed there, ``<prefix>/lib``,
which is what mpi4py loads); a compiled program by the library ``ldd`` resolves for it. The prefix is where the
MPI's own launcher is looked for (``<prefix>/bin``). Unknown means MPICH, mnp's default.
"""

from __future__ import annotations

import mmap
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FAMILY_NAMES", "INTEL_MARK", "MpiInfo", "detect_mpi", "launcher_major", "library_family", "program_of"]

INTEL_MARK = b"Intel(R) MPI Library"


@dataclass(frozen=True)
class MpiInfo:
    family: str  # "mpich" | "openmpi" | "impi"
    why: str
    prefix: Path | None = None  # the MPI installation (its bin/ has mpirun or mpiexec)
    found: bool = False  # a libmpi was found (not the MPICH default for want of one)


# wrapper -> (its options that take a value, how many positional words come before the command)
_WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "env": (frozenset({"-u", "--unset", "-C", "--chdir", "-S", "--split-string"}), 0),
    "stdbuf": (frozenset({"-i", "-o", "-e"}), 0),
    "numactl": (frozenset({"-N", "-m", "-C", "-p", "-i", "-c", "-P"}), 0),
    "time": (frozenset({"-f", "--format", "-o", "--output"}), 0),
    "timeout": (frozenset({"-s", "--signal", "-k", "--kill-after"}), 1),
    "nice": (frozenset({"-n", "--adjustment"}), 0),
    "ionice": (frozenset({"-c", "-n", "-p", "-t"}), 0),
    "taskset": (frozenset(), 1),  # taskset MASK cmd | taskset -c LIST cmd (-c is a flag; LIST is the positional)
    "chrt": (frozenset(), 1),
    "nohup": (frozenset(), 0),
    "setsid": (frozenset(), 0),
}


def program_of(argv: list[str]) -> list[str]:
    """The command behind the wrappers in front of it (``env FOO=1 stdbuf -oL python app.py`` -> ``python
    app.py``; ``sh -c "python app.py"`` -> ``python app.py``)."""
    import shlex

    words = list(argv)
    for _ in range(8):  # wrappers of wrappers, bounded
        if not words:
            return words
        name = os.path.basename(words[0])
        if name in ("sh", "bash", "dash") and len(words) >= 3 and words[1] == "-c":
            try:
                inner = shlex.split(words[2])
            except ValueError:
                return words
            cut = next((i for i, w in enumerate(inner) if w in ("|", "||", "&&", ";", "&")), len(inner))
            words = inner[:cut]
            continue
        if name not in _WRAPPERS:
            return words
        takes_value, positional = _WRAPPERS[name]
        i = 1
        while i < len(words) and words[i].startswith("-") and words[i] != "--":
            i += 2 if words[i] in takes_value else 1
        if i < len(words) and words[i] == "--":
            i += 1
        if name == "env":
            while i < len(words) and "=" in words[i] and not words[i].startswith("="):
                i += 1
        words = words[i + positional:]
    return words


def _is_intel(lib: Path) -> bool:
    try:
        with lib.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m.find(INTEL_MARK) >= 0
    except (OSError, ValueError):  # unreadable, or empty (mmap of 0 bytes)
        return False


def library_family(lib: Path) -> str | None:
    """The MPI family of a ``libmpi`` file: ``openmpi`` (``.so.40``), ``impi`` or ``mpich`` (``.so.12``)."""
    if ".so.40" in lib.name:
        return "openmpi"
    if ".so.12" in lib.name:
        return "impi" if _is_intel(lib) else "mpich"
    return None


FAMILY_NAMES = {"openmpi": "Open MPI", "mpich": "MPICH", "impi": "Intel MPI"}


def _prefix(libdir: Path) -> Path:
    """``<prefix>/lib[/<multiarch>]`` -> ``<prefix>``; Debian's ``/usr/lib/x86_64-linux-gnu`` -> ``/usr``."""
    p = libdir.resolve()
    while p.name != "lib" and p.parent != p:
        p = p.parent
    return p.parent if p.name == "lib" else libdir


def detect_mpi(argv: list[str], path: str | None = None) -> MpiInfo:
    argv = program_of(argv)
    exe = shutil.which(argv[0], path=path or os.environ.get("PATH")) if argv else None
    if exe is None:
        return MpiInfo("mpich", f"auto: {argv[0] if argv else '?'} not found here; assuming MPICH")
    p = Path(exe)
    if p.name.startswith("python"):
        prefix = p.parent.parent  # <prefix>/bin/python (a venv or an installation)
        for lib in sorted((prefix / "lib").glob("libmpi.so.*")):
            fam = library_family(lib)
            if fam:
                return MpiInfo(fam, f"auto: {p} has {FAMILY_NAMES[fam]}'s {lib.name} in {prefix / 'lib'}", prefix, True)
        return MpiInfo("mpich", f"auto: no MPI library next to {p}; assuming MPICH")
    try:
        out = subprocess.run(["ldd", exe], capture_output=True, text=True, timeout=10, check=False,
                             stdin=subprocess.DEVNULL, start_new_session=True).stdout  # Ctrl-C is mnp's alone
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    m = re.search(r"(libmpi\.so\.\d+)\s*=>\s*(\S+)", out)
    fam = library_family(Path(m.group(2))) if m else None
    if m and fam:
        return MpiInfo(fam, f"auto: {exe} links {FAMILY_NAMES[fam]}'s {m.group(2)}", _prefix(Path(m.group(2)).parent),
                       True)
    return MpiInfo("mpich", f"auto: {exe} links no known libmpi; assuming MPICH")


def launcher_major(launcher: str) -> int | None:
    """The major version an Open MPI ``mpirun`` reports (4 and 5 take different options)."""
    try:
        out = subprocess.run([launcher, "--version"], capture_output=True, text=True, timeout=20,
                             check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"Open MPI\)?\s+(\d+)\.", out)
    return int(m.group(1)) if m else None
