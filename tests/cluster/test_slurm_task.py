"""The srun provider's pure parts: the step's command line, srun's words for a task's end, and the environment the
agent (and so every rank) keeps."""

from __future__ import annotations

import pytest

from mnp.cluster.slurm import _status, srun_argv
from mnp.cluster.srun_task import scrub_environment

pytestmark = pytest.mark.noroot


def test_srun_argv_one_task_per_node_no_mpi_no_binding() -> None:
    argv = srun_argv("ab12", ["node3", "node1", "node2"], "/opt/py/bin/python")
    assert argv[0] == "srun" and argv[-3:] == ["/opt/py/bin/python", "-m", "mnp.cluster.srun_task"]
    for opt in ("--nodes=3", "--ntasks=3", "--ntasks-per-node=1", "--nodelist=node[1-3]", "--overlap",
                "--kill-on-bad-exit=0", "--wait=0", "--mpi=none", "--cpu-bind=none", "--label", "--input=all",
                "--job-name=mnp-ab12"):
        assert opt in argv, opt


@pytest.mark.parametrize("text, status", [
    ("Exited with exit code 3", 3),
    ("Exited with exit code 0", 0),
    ("Killed", 137),
    ("Terminated", 143),
    ("Segmentation fault (core dumped)", 139),
    ("something new", 255),
])
def test_status_from_srun_words(text: str, status: int) -> None:
    assert _status(text) == status


def test_scrub_removes_slurm_and_pmi_but_keeps_the_config_path() -> None:
    env = {"SLURM_PROCID": "1", "SLURM_STEP_ID": "0", "SLURMD_NODENAME": "n1", "PMI_FD": "3", "PMIX_RANK": "0",
           "SLURM_CONF": "/etc/slurm/slurm.conf", "PATH": "/bin", "MY_SLURMISH": "x"}
    scrub_environment(env)
    assert env == {"SLURM_CONF": "/etc/slurm/slurm.conf", "PATH": "/bin", "MY_SLURMISH": "x"}
