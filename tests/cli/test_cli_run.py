"""`mnp run` and `mnp launch` end to end, as users type them: the real `mnp` process on real isolated local nodes
(MPICH, namespaces). Ranks laid out by -N/-n, -x, the job id on stderr, labels, timestamps, --output/--error
files, --timeout, a job piped on stdin."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from conftest import JOBS, run_mnp

pytestmark = pytest.mark.namespaces

ENVDUMP = [sys.executable, str(JOBS / "envdump.py")]


def _records(stdout: str) -> list[dict]:
    return [json.loads(line.split("ENV ", 1)[1]) for line in stdout.splitlines() if "ENV {" in line]


def test_run_n_ranks_over_N_nodes_in_blocks(mnp_home: Path, no_leftovers: None) -> None:
    p = run_mnp(["run", "-N", "2", "-np", "5", "-x", "USER_VAR=from-x", "--transport", "tcp", *ENVDUMP], mnp_home)
    assert p.returncode == 0, p.stderr
    recs = _records(p.stdout)
    assert sorted(r["rank"] for r in recs) == [0, 1, 2, 3, 4] and {r["size"] for r in recs} == {5}
    node_of = {r["rank"]: int(r["env"]["MNP_NODE_INDEX"]) for r in recs}
    assert node_of == {0: 0, 1: 0, 2: 0, 3: 1, 4: 1}  # 5 over 2 nodes: 3 + 2, in blocks
    assert len({r["host"] for r in recs}) == 2
    assert {r["env"]["USER_VAR"] for r in recs} == {"from-x"}
    assert {r["env"]["FI_PROVIDER"] for r in recs} == {"tcp"}
    job_id = recs[0]["env"]["MNP_JOB_ID"]
    # the job's id comes first on stderr, in one line
    assert p.stderr.splitlines()[0] == f"mnp: job {job_id} (envdump): 2 node(s), 5 rank(s)"
    rec = json.loads(run_mnp(["status", "--json", job_id], mnp_home).stdout)
    assert rec["job_id"] == job_id and rec["state"] == "SUCCEEDED" and rec["name"] == "envdump"
    assert rec["command"] == " ".join(ENVDUMP) and rec["spec_path"] is None
    assert [n["ranks"] for n in rec["nodes"]] == [[0, 1, 2], [3, 4]]


def test_label_timestamp_and_output_files(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    hello = [sys.executable, "-c", "import os, sys; r = os.environ['MNP_RANK']; print('out', r); "
                                   "print('err', r, file=sys.stderr)"]
    p = run_mnp(["run", *hello], mnp_home)  # one rank: no label
    assert p.returncode == 0, p.stderr
    assert p.stdout == "out 0\n"
    p = run_mnp(["run", "-n", "2", *hello], mnp_home)  # more than one: labelled
    assert sorted(p.stdout.splitlines()) == ["[node 0 rank 0] out 0", "[node 0 rank 1] out 1"]
    p = run_mnp(["run", "-n", "2", "--no-label", "--timestamp", *hello], mnp_home)
    assert len(p.stdout.splitlines()) == 2
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} out [01]", line) for line in p.stdout.splitlines()), p.stdout
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    p = run_mnp(["run", "-N", "2", "-n", "2", "--no-label", "--output", f"{out_dir}/%j.%n.%r.%h.out",
                 "--error", f"{out_dir}/all.err", *hello], mnp_home)
    assert p.returncode == 0, p.stderr
    job_id = p.stderr.split()[2]
    assert p.stdout == "" and "err " not in p.stderr  # both streams went to the files
    assert {f.name for f in out_dir.iterdir()} == {f"{job_id}.0.0.node0.out", f"{job_id}.1.1.node1.out", "all.err"}
    assert (out_dir / f"{job_id}.1.1.node1.out").read_text() == "out 1\n"
    assert sorted((out_dir / "all.err").read_text().splitlines()) == ["err 0", "err 1"]  # one file, both ranks
    logs = run_mnp(["logs", job_id, "--stdout"], mnp_home)  # the kept logs are there as always
    assert sorted(logs.stdout.splitlines()) == ["[node 0 rank 0] out 0", "[node 1 rank 1] out 1"]


def test_run_timeout_and_exit_code(mnp_home: Path, no_leftovers: None) -> None:
    p = run_mnp(["run", "--timeout", "1", "--grace", "1", "-N", "2", "sleep", "30"], mnp_home)
    assert p.returncode == 124, p.stderr
    assert "timeout" in p.stderr.splitlines()[-1]
    p = run_mnp(["run", "-N", "2", sys.executable, "-c", "import os, sys; sys.exit(int(os.environ['MNP_RANK']) * 3)"],
                mnp_home)
    assert p.returncode == 3 and "node 1 rank 1 exited with code 3" in p.stderr


def test_launch_job_from_stdin_and_n_is_ranks(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = f"name: piped\nnodes: 2\ncommand: {json.dumps(ENVDUMP)}\ntransport: tcp\n"
    p = run_mnp(["launch", "-n", "4", "-"], mnp_home, input=job)
    assert p.returncode == 0, p.stderr
    assert p.stderr.splitlines()[0] == "mnp: -n is ranks (as in mpirun and srun): 4 rank(s) on 2 node(s); " \
                                       "-N 4 asks for 4 nodes"
    recs = _records(p.stdout)
    assert sorted((int(r["env"]["MNP_NODE_INDEX"]), r["rank"]) for r in recs) == [(0, 0), (0, 1), (1, 2), (1, 3)]
    job_id = recs[0]["env"]["MNP_JOB_ID"]
    rec = json.loads(run_mnp(["status", "--json", job_id], mnp_home).stdout)
    assert rec["name"] == "piped" and rec["state"] == "SUCCEEDED"


def test_stdin_goes_to_rank_0_or_as_asked(mnp_home: Path, no_leftovers: None) -> None:
    reader = [sys.executable, "-c", "import os, sys; print(os.environ['MNP_RANK'], repr(sys.stdin.read()))"]
    p = run_mnp(["run", "-N", "2", "-n", "2", "--no-label", *reader], mnp_home, input="hi\n")
    assert p.returncode == 0, p.stderr
    assert sorted(p.stdout.splitlines()) == ["0 'hi\\n'", "1 ''"]  # mpirun's habit: rank 0 reads, others EOF
    p = run_mnp(["run", "-N", "2", "-n", "2", "--no-label", "--stdin", "all", *reader], mnp_home, input="hi\n")
    assert sorted(p.stdout.splitlines()) == ["0 'hi\\n'", "1 'hi\\n'"]
    p = run_mnp(["run", "-n", "2", "--stdin", "2", *reader], mnp_home, input="hi\n")
    assert p.returncode == 2 and p.stderr == "mnp: error: --stdin: rank 2 is not in the job (ranks 0-1)\n"


@pytest.mark.noroot
def test_exit_status_carries_failure_whatever_the_code() -> None:
    from mnp.cli.run import exit_status

    assert exit_status(0, True) == 0 and exit_status(None, True) == 0
    assert [exit_status(c, False) for c in (1, 3, 255, 256, 257, 512, -1, None, 0)] == [1, 3, 255, 1, 1, 1, 255, 1, 1]


def test_mpi_abort_256_is_not_success(mnp_home: Path, no_leftovers: None) -> None:
    """MPI_Abort(comm, 256): the job is FAILED with exit code 256 in its record; the shell gets 1, not 256 & 0xff."""
    code = ("from mpi4py import MPI; import time; "
            "MPI.COMM_WORLD.Abort(256) if MPI.COMM_WORLD.rank == 0 else time.sleep(30)")
    p = run_mnp(["run", "-J", "abort256", "-n", "2", sys.executable, "-c", code], mnp_home)
    assert p.returncode == 1, p.stderr
    st = json.loads(run_mnp(["status", "--json", "abort256"], mnp_home).stdout)
    assert st["state"] == "FAILED" and st["exit_code"] == 256
