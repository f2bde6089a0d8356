"""`mnp run` and `mnp launch` options through the real command in-process (CliRunner): bad input is one line and
exit 2 with nothing recorded, `--dry-run` prints the plan and records nothing, `-n` is ranks (with a hint for the
old meaning), `launch -` reads stdin, a shell pipeline in a command is refused with the way to write it."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mnp.cli.layout import split_ranks
from mnp.cli.main import cli
from mnp.cli.render import check_pattern, expand_pattern
from mnp.errors import UsageError

pytestmark = [pytest.mark.timeout(120), pytest.mark.noroot]

CLEAN = {k: None for k in ("MNP_DEBUG", "MNP_NODES", "MNP_GRACE", "MNP_HOSTS", "MNP_HOSTFILE", "MNP_IFACE",
                           "SLURM_JOB_NODELIST", "SLURM_NODELIST", "MNP_HEARTBEAT", "MNP_DEAD_AFTER")}


def invoke(args: list[str], home: Path, stdin: str | bytes | None = None,
           env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, args, input=stdin, prog_name="mnp",
                              env={**CLEAN, "MNP_HOME": str(home), **(env or {})})


def recorded(home: Path) -> int:
    if not (home / "mnp.db").exists():
        return 0
    with contextlib.closing(sqlite3.connect(home / "mnp.db")) as c:
        return int(c.execute("SELECT count(*) FROM jobs").fetchone()[0])


def one_error(r: Result, expect: str, home: Path) -> None:
    assert r.exit_code == 2, (r.exit_code, r.stderr, r.exception)
    assert isinstance(r.exception, SystemExit), r.exception
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mnp: error: "), r.stderr
    assert expect in lines[0], lines[0]
    assert "Traceback" not in r.output and r.stdout == ""
    assert recorded(home) == 0


@pytest.fixture
def job(tmp_path: Path) -> Path:
    p = tmp_path / "job.yaml"
    p.write_text("name: j\ncommand: python app.py\nnodes: 2\n")
    return p


@pytest.fixture
def rpn_job(tmp_path: Path) -> Path:
    p = tmp_path / "rpn.yaml"
    p.write_text("name: r\ncommand: python app.py\nnodes: 4\nranks_per_node: 2\n")
    return p


BAD_RUN = [
    (["--shm-size", "lots"], "--shm-size: 'lots' is not a size"),
    (["--timeout", "0"], "--timeout: must be more than 0"),
    (["--timeout", "nan"], "'--timeout': 'nan' is not a number of seconds"),
    (["-x", "1BAD=2"], "-x/--export: '1BAD' is not a valid environment variable name"),
    (["-x", "MNP_TEST_SURELY_UNSET"], "-x MNP_TEST_SURELY_UNSET: not set in this environment"),
    (["-J", "bad name"], "-J/--job-name: 'bad name' does not match"),
    (["-N", "4", "-n", "2"], "-n/--ntasks: 2 rank(s) cannot fill 4 nodes"),
    (["-N", "2", "-n", "5", "--ntasks-per-node", "2"], "5 rank(s) is not 2 node(s) x 2"),
    (["-N", "0"], "'-N' / '--nodes': 0 is not in the range"),
    (["-np", "0"], "0 is not in the range"),
    (["--ntasks-per-node", "5000"], "'--ntasks-per-node': 5000 is not in the range"),
    (["--mpi", "lam"], "'--mpi': 'lam' is not one of"),
    (["--output", "out.%q"], "--output: unknown escape '%q'"),
    (["--error", "err.%"], "--error: a lone '%' at the end"),
    (["--hosts", "h1", "-N", "2"], "--nodes: 2 nodes asked for, but only 1 host(s) given"),
    (["--bogus"], "No such option '--bogus'"),
]


@pytest.mark.parametrize("args,expect", BAD_RUN, ids=[" ".join(a) for a, _ in BAD_RUN])
def test_bad_run_options_are_one_line_exit_2(args: list[str], expect: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    one_error(invoke(["run", *args, "python", "app.py"], home), expect, home)


@pytest.mark.parametrize("words,op", [(["python", "a.py", "|", "grep", "x"], "'|'"),
                                      (["make", "&&", "./a.out"], "'&&'")])
def test_run_refuses_a_shell_pipeline(words: list[str], op: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = invoke(["run", *words], home)
    one_error(r, f"COMMAND: {op} is shell syntax", home)
    assert '["sh", "-c", "' + " ".join(words) + '"]' in r.stderr


@pytest.mark.parametrize("command,expect", [
    ("command: python a.py | tee out\n", 'command: \'|\' is shell syntax, and mnp runs the command without a shell; '
                                         'write ["sh", "-c", "python a.py | tee out"]'),
    ("command: [python, a.py, '|', tee, out]\n", "command: '|' is shell syntax"),
    ("command: ./a.out > log\n", "command: '>' is shell syntax"),
    ("command: x\nnode_ranges: [{target_nodes: '0:', command: 'a; b'}]\n", "node_ranges[0].command: ';' is shell"),
])
def test_job_file_pipeline_is_a_spec_error(command: str, expect: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    p = tmp_path / "pipe.yaml"
    p.write_text(command)
    one_error(invoke(["launch", str(p)], home), f"{p}: {expect}", home)


@pytest.mark.parametrize("command", ['python -c "print(1 | 2)"', "find . -exec rm {} \\;", "[find, ., ';']",
                                     "[python, -c, 'a | b']"])
def test_quoted_operators_are_no_pipeline(command: str, tmp_path: Path) -> None:
    p = tmp_path / "ok.yaml"
    p.write_text(f"command: {command}\n")
    r = invoke(["launch", "--dry-run", str(p)], tmp_path / "home")
    assert r.exit_code == 0, r.stderr


def test_old_meaning_of_n_on_launch(job: Path, rpn_job: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    # the job says 4 nodes x 2 ranks: `-n 4` (4 nodes, before) is refused with the way to say it now
    one_error(invoke(["launch", "-n", "4", str(rpn_job)], home),
              "-n 4: -n now means ranks (the mpirun/srun habit), and the job sets 8 ranks on 4 node(s); use -N 4", home)
    # agreeing with the job is fine; so is -n with -N (then -n overrides ranks_per_node)
    r = invoke(["launch", "-n", "8", "--dry-run", "--json", str(rpn_job)], home)
    assert r.exit_code == 0, r.stderr
    assert [len(n["ranks"]) for n in json.loads(r.stdout)["nodes"]] == [2, 2, 2, 2]
    r = invoke(["launch", "-N", "2", "-n", "3", "--dry-run", "--json", str(rpn_job)], home)
    assert r.exit_code == 0, r.stderr
    assert [n["ranks"] for n in json.loads(r.stdout)["nodes"]] == [[0, 1], [2]]
    # a job that leaves ranks open: -n runs, with one line saying what -n means now
    r = invoke(["launch", "-n", "4", "--dry-run", "--json", str(job)], home)
    assert r.exit_code == 0, r.stderr
    assert r.stderr.splitlines() == ["mnp: -n is ranks (as in mpirun and srun): 4 rank(s) on 2 node(s); "
                                     "-N 4 asks for 4 nodes"]
    assert [n["ranks"] for n in json.loads(r.stdout)["nodes"]] == [[0, 1], [2, 3]]
    assert recorded(home) == 0


def test_dry_run_shows_the_control_planes_shape(tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = invoke(["run", "-N", "7", "--dry-run", "hostname"], home)
    assert "control    star: every agent dials the coordinator" in r.stdout.splitlines()  # local: a star
    r = invoke(["run", "-N", "7", "--tree-width", "2", "--dry-run", "--json", "hostname"], home)
    assert json.loads(r.stdout)["control"] == {"width": 2, "levels": [2, 4, 1], "relays": 3}
    hosts = ",".join(f"h{i}" for i in range(40))
    r = invoke(["run", "--hosts", hosts, "--dry-run", "hostname"], home)
    assert "control    tree of width 32: 2 levels of agents (32, 8), 1 of them relaying" in r.stdout.splitlines()
    assert recorded(home) == 0


def test_dry_run_prints_the_plan_and_records_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = invoke(["run", "-N", "3", "-n", "7", "-x", "A=1", "--transport", "tcp", "--timeout", "60", "--dry-run",
                "python", "app.py", "--flag"], home)
    assert r.exit_code == 0, r.stderr
    assert r.stderr == "" and recorded(home) == 0
    assert not (home / "jobs").exists() or not any((home / "jobs").iterdir())
    out = r.stdout.splitlines()
    assert out[0] == "dry run: job 'app', nothing started"
    assert "ranks      7" in out and "transport  tcp" in out and "timeout    60 s" in out
    nodes = [line.split() for line in out if line.startswith("node ")]
    assert [n[3:5] for n in nodes] == [["ranks", "0-2"], ["ranks", "3-4"], ["ranks", "5-6"]]  # first node +1
    assert all(n[5:] == ["python", "app.py", "--flag"] for n in nodes)  # what follows COMMAND is COMMAND's
    assert "env        A=1" in out
    r = invoke(["run", "-N", "2", "--ntasks-per-node", "3", "--dry-run", "--json", "./a.out"], home)
    plan = json.loads(r.stdout)
    assert plan["ranks"] == 6 and plan["num_nodes"] == 2 and plan["transport"] == "auto"
    assert [n["ranks"] for n in plan["nodes"]] == [[0, 1, 2], [3, 4, 5]]
    r = invoke(["run", "-n", "5", "--ntasks-per-node", "2", "--dry-run", "--json", "./a.out"], home)
    assert [len(n["ranks"]) for n in json.loads(r.stdout)["nodes"]] == [2, 2, 1]  # ceil(5 / 2) nodes
    r = invoke(["run", "--dry-run", "--json", "./a.out"], home)
    assert json.loads(r.stdout)["ranks"] == 1  # run's default: one rank per node
    assert recorded(home) == 0


def test_export_takes_the_value_here_and_wins_over_the_job(tmp_path: Path) -> None:
    p = tmp_path / "env.yaml"
    p.write_text("command: x\nnodes: 2\nenv: {A: job, B: job}\n"
                 "node_ranges: [{target_nodes: '0:', env: {A: range}}]\n")
    r = invoke(["launch", "-x", "A=opt", "-x", "HOME_VAR", "--dry-run", "--json", str(p)], tmp_path / "home",
               env={"HOME_VAR": "here"})
    assert r.exit_code == 0, r.stderr
    envs = [n["env"] for n in json.loads(r.stdout)["nodes"]]
    assert envs == [{"A": "opt", "B": "job", "HOME_VAR": "here"}] * 2


def test_launch_reads_the_job_from_stdin(tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = invoke(["launch", "--dry-run", "--json", "-"], home, stdin="name: piped\ncommand: ./a.out\nnodes: 3\n"
                                                                  "ranks_per_node: 1\n")
    assert r.exit_code == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["name"] == "piped" and plan["num_nodes"] == 3 and plan["ranks"] == 3
    one_error(invoke(["launch", "-"], home, stdin="command: x\nnodez: 1\n"), "<stdin>: nodez: unknown field", home)
    one_error(invoke(["launch", "-"], home, stdin=""), "<stdin>: a job file must be a YAML map of fields", home)
    one_error(invoke(["launch", "-"], home, stdin=b"\xff\xfe junk"), "<stdin>: cannot read job: not UTF-8 text", home)
    one_error(invoke(["launch", "-"], home, stdin="command: x\n" + "#" * (1 << 20) + "\n"),
              "<stdin>: cannot read job: larger than 1 MiB", home)


def test_uneven_ranks_with_the_jobs_own_ranges(tmp_path: Path) -> None:
    p = tmp_path / "ranges.yaml"
    p.write_text("command: x\nnodes: 2\nnode_ranges: [{target_nodes: '0', env: {R: main}}, "
                 "{target_nodes: '1:', env: {R: child}}]\n")
    home = tmp_path / "home"
    one_error(invoke(["launch", "-N", "2", "-n", "3", str(p)], home), "give a multiple of the node count", home)
    r = invoke(["launch", "-N", "2", "-n", "4", "--dry-run", "--json", str(p)], home)
    nodes = json.loads(r.stdout)["nodes"]
    assert [(len(n["ranks"]), n["env"]["R"]) for n in nodes] == [(2, "main"), (2, "child")]


def test_split_ranks() -> None:
    assert split_ranks(5, 2) == [3, 2]
    assert split_ranks(8, 4) == [2, 2, 2, 2]
    assert split_ranks(7, 3) == [3, 2, 2]
    assert split_ranks(3, 3) == [1, 1, 1]
    with pytest.raises(UsageError, match="cannot fill 4 nodes"):
        split_ranks(3, 4)


def test_output_patterns() -> None:
    assert expand_pattern("out.%j.%n.%r.%h.%%", "abc", 1, 3, "node1") == "out.abc.1.3.node1.%"
    assert expand_pattern("%r.log", "abc", 0, -1, "h") == "launcher.log"
    assert check_pattern("a%%b", "--output") == "a%%b"
    for bad in ("x%y", "x%", " "):
        with pytest.raises(UsageError, match="--output"):
            check_pattern(bad, "--output")
