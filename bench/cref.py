"""The C reference (``bench/c/osu_ref.c``), built on demand with the MPI's own ``mpicc``.

The compiler is the ``mpicc`` beside this Python (the MPICH wheel installs one into the environment), else the
first on ``PATH``. The binary goes to ``$MNP_HOME/bench/`` (default ``~/.mnp``), named by a hash of the source
and the compiler, so a changed source or another MPI builds anew. Local nodes see the binary where it was built;
SSH hosts would need it at the same path, so :func:`c_reference` is only used with local nodes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.jobs import JOBS_DIR

__all__ = ["SOURCE", "c_reference", "find_mpicc"]

SOURCE = JOBS_DIR / "c" / "osu_ref.c"


def find_mpicc() -> str | None:
    here = Path(sys.executable).parent / "mpicc"
    return str(here) if here.exists() else shutil.which("mpicc")


def c_reference(home: Path | None = None) -> tuple[Path | None, str]:
    """(the built binary, how) or (None, why not)."""
    cc = find_mpicc()
    if cc is None:
        return None, "no mpicc beside this Python or on PATH"
    src = SOURCE.read_bytes()
    digest = hashlib.sha256(src + cc.encode()).hexdigest()[:12]
    out_dir = (home or Path(os.environ.get("MNP_HOME", Path.home() / ".mnp"))) / "bench"
    out = out_dir / f"osu_ref-{digest}"
    if out.exists():
        return out, f"{out} (built earlier with {cc})"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    p = subprocess.run([cc, "-O2", "-o", str(tmp), str(SOURCE)], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        tmp.unlink(missing_ok=True)
        return None, f"{cc} failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}"
    tmp.replace(out)
    return out, f"{out} (built with {cc})"
