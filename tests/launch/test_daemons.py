"""Which remote commands a launcher may have run: its daemons' command lines, as mpirun and mpiexec hand them to
their remote shell, and nothing else."""

from __future__ import annotations

import pytest

from mnp.launch.daemons import check_daemon_command

pytestmark = pytest.mark.noroot

ACCEPTED = [
    # PRRTE (Open MPI 5), sh form
    "PRTE_PREFIX=/opt/ompi;export PRTE_PREFIX;LD_LIBRARY_PATH=/opt/ompi/lib:$LD_LIBRARY_PATH;export "
    "LD_LIBRARY_PATH;DYLD_LIBRARY_PATH=/opt/ompi/lib:$DYLD_LIBRARY_PATH;export DYLD_LIBRARY_PATH;"
    "/opt/ompi/bin/prted --prtemca ess \"env\" --prtemca ess_base_nspace \"prte-h-1@0\" --prtemca ess_base_vpid 1",
    # ORTE (Open MPI 4)
    "orted -mca ess \"env\" -mca ess_base_jobid \"123\" -mca ess_base_vpid 1 -mca ess_base_num_procs \"2\" "
    "-mca orte_hnp_uri \"123.0;tcp://10.0.0.1:4000\"",
    # Hydra
    "\"/venv/bin/hydra_pmi_proxy\" --control-port 10.0.0.1:4242 --rmk user --launcher ssh --demux poll --pgid 0 "
    "--retries 10 --usize -2 --proxy-id 1",
    "PATH=/opt/bin:$PATH prted --prtemca x y",
    "unset LD_PRELOAD; export PATH; prted",
]

REFUSED = {
    "id": "not a launcher daemon",
    "/bin/sh -c prted": "not a launcher daemon",
    "prted; id": "not a launcher daemon",
    "id; prted": "not a launcher daemon",
    "prted && id": "shell operator",
    "prted || id": "shell operator",
    "prted | sh": "shell operator",
    "prted & id": "shell operator",
    "prted > /etc/passwd": "shell operator",
    "prted < /etc/shadow": "shell operator",
    "prted `id`": "command substitution",
    "prted $(id)": "command substitution",
    "prted\nid": "a newline",
    "X=$(id) prted": "command substitution",
    "export $(id); prted": "command substitution",
    "export -f; prted": "something other than variables",
    "": "empty",
    "A=1": "no daemon",
    "prted 'unterminated": "cannot parse",
    "/tmp/evilprted": "not a launcher daemon",
    "( prted )": "shell operator",
}


@pytest.mark.parametrize("command", ACCEPTED)
def test_launcher_daemon_lines_are_accepted(command: str) -> None:
    assert check_daemon_command(command) is None


@pytest.mark.parametrize("command,why", REFUSED.items())
def test_anything_else_is_refused_with_a_reason(command: str, why: str) -> None:
    problem = check_daemon_command(command)
    assert problem is not None and why in problem, problem


def test_huge_command_is_refused() -> None:
    assert "too long" in (check_daemon_command("prted " + "x" * 70000) or "")
