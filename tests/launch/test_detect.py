"""mpi: auto finds the program behind its wrappers, and an mpi: that the program contradicts is refused in one
line instead of starting ranks that would each be a singleton."""

from __future__ import annotations

import pytest
from conftest import ROOT

from mnp.errors import SpecError
from mnp.launch.backends import choose_mpi
from mnp.launch.detect import detect_mpi, program_of

pytestmark = pytest.mark.noroot

OMPI_PY = str(ROOT / ".venv-ompi" / "bin" / "python")
MPICH_PY = str(ROOT / ".venv" / "bin" / "python")


@pytest.mark.parametrize(("argv", "program"), [
    (["python", "app.py"], ["python", "app.py"]),
    (["env", "-u", "BAR", "FOO=1", "python", "app.py"], ["python", "app.py"]),
    (["env", "--", "python", "app.py"], ["python", "app.py"]),
    (["stdbuf", "-oL", "-e", "0", "python", "app.py"], ["python", "app.py"]),
    (["numactl", "--cpunodebind=0", "-m", "0", "python", "app.py"], ["python", "app.py"]),
    (["time", "-p", "python", "app.py"], ["python", "app.py"]),
    (["timeout", "-s", "KILL", "60", "python", "app.py"], ["python", "app.py"]),
    (["taskset", "-c", "0-3", "python", "app.py"], ["python", "app.py"]),
    (["nice", "-n", "5", "nohup", "python", "app.py"], ["python", "app.py"]),
    (["/usr/bin/env", "A=1", "stdbuf", "-oL", "python", "app.py"], ["python", "app.py"]),
    (["sh", "-c", "python app.py --x 1 | tee out"], ["python", "app.py", "--x", "1"]),
    (["bash", "-c", "exec python app.py"], ["exec", "python", "app.py"]),
])
def test_program_behind_wrappers(argv: list[str], program: list[str]) -> None:
    assert program_of(argv) == program


@pytest.mark.parametrize("wrap", [[], ["env", "X=1"], ["stdbuf", "-oL"], ["timeout", "60"], ["time", "-p"]])
def test_auto_sees_through_wrappers(wrap: list[str]) -> None:
    assert detect_mpi([*wrap, OMPI_PY, "app.py"]).family == "openmpi"
    assert detect_mpi([*wrap, MPICH_PY, "app.py"]).family == "mpich"


def test_contradicting_mpi_is_refused_in_one_line() -> None:
    with pytest.raises(SpecError) as e:
        choose_mpi("openmpi", "auto", [MPICH_PY, "app.py"], "job.yaml")
    msg = str(e.value)
    assert msg.startswith("job.yaml: mpi: openmpi, but the program uses MPICH (") and "set mpi: mpich or auto" in msg
    with pytest.raises(SpecError, match="mpi: mpich, but the program uses Open MPI"):
        choose_mpi("mpich", "auto", ["env", "A=1", OMPI_PY, "app.py"])


def test_agreeing_or_unknown_programs_are_left_as_asked() -> None:
    assert choose_mpi("openmpi", "auto", [OMPI_PY, "x"]).launcher == "mpirun"
    assert choose_mpi("mpich", "auto", ["/bin/true"]).family == "mpich"  # no libmpi: nothing to contradict
    assert choose_mpi("openmpi", "auto", ["/bin/true"]).family == "openmpi"
