"""Bad input never gets far (issue #8): every malformed job file, hostfile or option is exit 2 and one line,
``mnp: error: ...``, naming the field, host or option -- no traceback, no node made, no job record written.

The table runs through the real command in-process (Click's CliRunner, with ``MNP_HOME`` in a temporary
directory); a few cases that are about the process as a whole (a FIFO that would hang a read, /dev/zero) also run
as a subprocess. A property-based test (hypothesis) throws generated job documents at the spec reader and
generated argument vectors at ``mnp launch``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from conftest import run_mnp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnp.cli.main import cli
from mnp.errors import SpecError
from mnp.spec.jobspec import MAX_NODES, JobSpec
from mnp.spec.model import load_spec
from mnp.spec.resolve import resolve_nodes

pytestmark = [pytest.mark.timeout(120), pytest.mark.noroot]

FIFO, DEVZERO, DIRECTORY, MISSING = "<fifo>", "<devzero>", "<dir>", "<missing>"
OK_JOB = "command: 'true'\nnodes: 2\n"
# Every variable that would change what `mnp launch` does, cleared for the in-process runs.
CLEAN_ENV: dict[str, str | None] = {k: None for k in (
    "MNP_DEBUG", "MNP_NODES", "MNP_GRACE", "MNP_HOSTS", "MNP_HOSTFILE", "MNP_IFACE", "MNP_SSH_PORT",
    "MNP_CONNECT_TIMEOUT", "SLURM_JOB_NODELIST", "SLURM_NODELIST", "SLURM_JOB_NUM_NODES", "SLURM_NNODES")}


def batch(**changes: Any) -> str:
    """A valid Batch job definition (JSON) with ``changes`` applied at paths spelt ``a__b__0__c``."""
    doc: dict[str, Any] = {"jobDefinitionName": "t", "type": "multinode", "nodeProperties": {
        "numNodes": 2, "mainNode": 0,
        "nodeRangeProperties": [{"targetNodes": "0:", "container": {"command": ["true"]}}]}}
    for path, value in changes.items():
        keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split("__")]
        cur = doc
        for k in keys[:-1]:
            cur = cur[k]
        cur[keys[-1]] = value
    return json.dumps(doc)


@dataclass
class Case:
    id: str
    args: list[str]  # after `mnp`; {job} and {hosts} are replaced by the files' paths
    expect: str  # a part of the one error line
    job: str | bytes = OK_JOB  # job file content, or FIFO/DEVZERO/DIRECTORY/MISSING
    hosts: str | bytes | None = None
    env: dict[str, str] = field(default_factory=dict)
    suffix: str = ".yaml"


def J(id: str, job: str | bytes, expect: str, *args: str, suffix: str = ".yaml") -> Case:
    """A bad job file, launched."""
    return Case(id, ["launch", *args, "{job}"], expect, job=job, suffix=suffix)


def Opt(id: str, args: list[str], expect: str, env: dict[str, str] | None = None) -> Case:
    """A bad option (the job file is fine)."""
    return Case(id, args, expect, env=env or {})


def H(id: str, hosts: str | bytes, expect: str) -> Case:
    """A bad hostfile (the job file is fine)."""
    return Case(id, ["launch", "--hostfile", "{hosts}", "{job}"], expect, hosts=hosts)


RANGES_101 = "command: x\nnodes: 4\nnode_ranges:\n" + "  - {target_nodes: '0:'}\n" * 101

CASES = [
    # -- job files: fields
    J("unknown field", "command: x\nnodez: 2\n", "nodez: unknown field"),
    J("duplicate key", "command: x\nnodes: 2\ncommand: y\n", "command: is given twice (lines 1 and 3)"),
    J("duplicate env key", "command: x\nenv:\n  A: 1\n  A: 2\n", "env.A: is given twice"),
    J("duplicate range key", "command: x\nnode_ranges:\n  - {target_nodes: '0', target_nodes: '0:'}\n",
      "node_ranges[0].target_nodes: is given twice"),
    J("nodes 0", "command: x\nnodes: 0\n", "nodes: must be at least 1, got 0"),
    J("nodes 100000", "command: x\nnodes: 100000\n", f"nodes: must be at most {MAX_NODES}, got 100000"),
    J("nodes string", "command: x\nnodes: four\n", "nodes: must be an integer, got a string"),
    J("nodes float", "command: x\nnodes: 2.5\n", "nodes: must be an integer, got 2.5"),
    J("main_node negative", "command: x\nmain_node: -1\n", "main_node: must be at least 0"),
    J("main_node past end", "command: x\nnodes: 2\nmain_node: 5\n", "main_node: is 5, but the job has 2 node(s)"),
    J("ranks_per_node 0", "command: x\nranks_per_node: 0\n", "ranks_per_node: must be at least 1"),
    J("ranks_per_node huge", "command: x\nranks_per_node: 5000\n", "ranks_per_node: must be at most 4096"),
    J("command empty", "command: ''\n", "command: must not be empty"),
    J("command map", "command: {a: 1}\n", "command: must be a string or a list of strings"),
    J("command quote", "command: \"echo 'a\"\n", "command: cannot split command"),
    J("command NUL", 'command: "a\\0b"\n', "command: must not contain a NUL byte"),
    J("command word NUL", 'command: [echo, "\\0"]\n', "command: must not contain a NUL byte"),
    J("no command", "nodes: 2\n", "command: a job needs a command"),
    J("process cycle", "processes:\n  - {name: a, command: x, depends_on: [{name: b, condition: START}]}\n"
      "  - {name: b, command: y, depends_on: [{name: a, condition: START}]}\n",
      "processes[0].depends_on: dependency cycle: a -> b -> a"),
    J("process healthy without health", "command: x\nprocesses:\n  - {name: a, command: x}\n"
      "  - {name: b, command: y, depends_on: [{name: a, condition: HEALTHY}]}\n",
      "processes[1].depends_on[0].condition: HEALTHY needs a health check"),
    J("process only, no essential", "processes: [{name: a, command: x, essential: false}]\n",
      "processes: node 0 has nothing to run"),
    J("process peer node", "nodes: 2\nprocesses: [{name: a, command: x, depends_on: "
      "[{name: a, condition: START, node: 3}]}]\n", "processes[0].depends_on[0].node: is 3, but the job has 2"),
    J("env list", "command: x\nenv: [A=1]\n", "env: must be a map of NAME: value"),
    J("env bad name", "command: x\nenv: {1A: v}\n", "env: '1A' is not a valid environment variable name"),
    J("env value NUL", 'command: x\nenv: {A: "a\\0b"}\n', "env.A: must not contain a NUL byte"),
    J("env value list", "command: x\nenv: {A: [1]}\n", "env: value of A must be a string or a number"),
    J("mpi", "command: x\nmpi: intel\n", "mpi: 'intel' is not one of 'mpich', 'openmpi', 'impi', 'auto'"),
    J("launcher", "command: x\nlauncher: srun\n", "launcher: 'srun' is not one of"),
    J("transport", "command: x\ntransport: ib\n", "transport: 'ib' is not one of"),
    J("shm_size word", "command: x\nshm_size: lots\n", "shm_size: 'lots' is not a size"),
    J("shm_size 0", "command: x\nshm_size: 0\n", "shm_size: must be positive"),
    J("shm_size huge", "command: x\nshm_size: 999999999Ti\n", "shm_size: must be at most"),
    J("timeout 0", "command: x\ntimeout: 0\n", "timeout: must be more than 0, got 0"),
    J("timeout nan", "command: x\ntimeout: .nan\n", "timeout: must be more than 0, got nan"),
    J("timeout inf", "command: x\ntimeout: .inf\n", "timeout: must be at most"),
    J("timeout bool", "command: x\ntimeout: true\n", "timeout: must be a number, got true or false"),
    J("timeout date", "command: x\ntimeout: 2001-12-14\n", "timeout: must be a number, got date"),
    J("workdir NUL", 'command: x\nworkdir: "/tmp\\0x"\n', "workdir: must not contain a NUL byte"),
    J("workdir empty", "command: x\nworkdir: ''\n", "workdir: must not be empty"),
    J("workdir list", "command: x\nworkdir: [a]\n", "workdir: must be a string, got a list"),
    J("name", "command: x\nname: bad name!\n", "name: 'bad name!' does not match"),
    J("name newline", 'command: x\nname: "a\\nb"\n', "name: 'a\\nb' does not match"),
    J("retry attempts 0", "command: x\nretry: {attempts: 0}\n", "retry.attempts: must be at least 1"),
    J("retry attempts 11", "command: x\nretry: {attempts: 11}\n", "retry.attempts: must be at most 10"),
    J("retry unknown", "command: x\nretry: {tries: 2}\n", "retry.tries: unknown field"),
    J("retry action", "command: x\nretry: {evaluate_on_exit: [{action: again}]}\n",
      "retry.evaluate_on_exit[0].action: 'again' is not one of 'retry', 'exit'"),
    J("retry exit code", "command: x\nretry: {evaluate_on_exit: [{action: exit, on_exit_code: 1a}]}\n",
      "retry.evaluate_on_exit[0].on_exit_code: '1a' does not match"),
    J("retry six rules", "command: x\nretry: {evaluate_on_exit: [" + ", ".join(["{action: exit}"] * 6) + "]}\n",
      "retry.evaluate_on_exit: has 6 entries; at most 5 allowed"),
    J("ranges not a list", "command: x\nnode_ranges: '0:'\n", "node_ranges: must be a list, got a string"),
    J("range garbage", "command: x\nnode_ranges: [{target_nodes: 'a:b'}]\n",
      "node_ranges[0].target_nodes: 'a:b' is not a node range"),
    J("range backwards", "command: x\nnode_ranges: [{target_nodes: '3:1'}]\n",
      "node_ranges[0].target_nodes: '3:1' ends before it starts"),
    J("range no target", "command: x\nnode_ranges: [{command: y}]\n",
      "node_ranges[0].target_nodes: required field is missing"),
    J("range unknown key", "command: x\nnode_ranges: [{target_nodes: '0:', cmd: y}]\n",
      "node_ranges[0].cmd: unknown field"),
    J("101 ranges", RANGES_101, "node_ranges: has 101 entries; at most 100 allowed"),
    J("ranges overlap", "command: x\nnodes: 4\nnode_ranges: [{target_nodes: '0:2'}, {target_nodes: '1:3'}]\n",
      "node_ranges[1].target_nodes: 1:3 overlaps node_ranges[0] (0:2)"),
    J("ranges gap", "command: x\nnodes: 4\nnode_ranges: [{target_nodes: '0:1'}]\n",
      "node_ranges: node(s) 2-3 are not covered by any range"),
    J("range past --nodes", "command: x\nnode_ranges: [{target_nodes: '0:5'}]\n",
      "node_ranges[0].target_nodes: '0:5' names nodes past the last node (2)", "--nodes", "3"),
    J("shm on 2 nodes", "command: x\ntransport: shm\n", "transport: 'shm' works within one node only", "-N", "2"),
    # -- job files: the document
    J("a list", "- a\n- b\n", "a job file must be a YAML map of fields"),
    J("a scalar", "hello\n", "a job file must be a YAML map of fields"),
    J("empty", "", "a job file must be a YAML map of fields"),
    J("YAML syntax", "command: [a, b\nnodes: 2\n", "invalid YAML"),
    J("two documents", "command: x\n---\ncommand: y\n", "line 2: invalid YAML"),
    J("raw NUL", b"command: x\x00y\n", "invalid YAML: unacceptable character #x0000"),
    J("python tag", "command: !!python/object/apply:os.system [true]\n", "invalid YAML: could not determine"),
    J("huge integer", "command: x\nnodes: " + "9" * 5000 + "\n", "invalid YAML: Exceeds the limit"),
    J("deep nesting", "command: " + "[" * 20000 + "]" * 20000 + "\n", "invalid YAML: exceeded maximum nesting"),
    J("non-string key", "command: x\n1: 2\n", "1: field names must be strings"),
    J("key with newline", 'command: x\n"a\\nb": 1\n', "a\\nb: unknown field"),
    J("recursive alias", "command: &a [*a]\n", "command: must be a string or a list of strings"),
    J("binary junk", bytes(range(256)) * 8, "cannot read job file: not UTF-8 text"),
    J("latin-1", "command: caf\xe9\n".encode("latin-1"), "cannot read job file: not UTF-8 text"),
    J("over 1 MiB", "command: x\n" + "#" * (1 << 20) + "\n", "cannot read job file: larger than 1 MiB"),
    J("a FIFO", FIFO, "cannot read job file: not a regular file (a FIFO)"),
    J("/dev/zero", DEVZERO, "cannot read job file: not a regular file (a character device)"),
    J("a directory", DIRECTORY, "Invalid value for 'JOB_FILE'"),
    J("missing", MISSING, "cannot read job file: No such file or directory"),
    # -- AWS Batch job definitions
    J("batch unknown key", batch(nodeProperties__nodeRangeProperties__0__container__foo=1),
      "nodeProperties.nodeRangeProperties[0].container.foo: unknown field", suffix=".json"),
    J("batch numNodes", batch(nodeProperties__numNodes=100000),
      f"nodeProperties.numNodes: must be at most {MAX_NODES}, got 100000", suffix=".json"),
    J("batch mainNode", batch(nodeProperties__mainNode=2), "nodeProperties.mainNode: is 2, but numNodes is 2",
      suffix=".json"),
    J("batch range past end", batch(nodeProperties__nodeRangeProperties__0__targetNodes="0:5"),
      "nodeProperties.nodeRangeProperties[0].targetNodes: '0:5' names nodes past the last node (1)", suffix=".json"),
    J("batch reserved env", batch(nodeProperties__nodeRangeProperties__0__container__environment=[
        {"name": "AWS_BATCH_JOB_ID", "value": "x"}]), "environment[0].name: 'AWS_BATCH_JOB_ID'", suffix=".json"),
    J("batch command NUL", batch(nodeProperties__nodeRangeProperties__0__container__command=["a\0"]),
      "container.command[0]: must not contain a NUL byte", suffix=".json"),
    J("batch duplicate key", batch().replace('"numNodes": 2', '"numNodes": 2, "numNodes": 3'),
      "nodeProperties.numNodes: is given twice", suffix=".json"),
    J("batch type", batch(type="container"), "type: must be 'multinode'", suffix=".json"),
    J("batch retry action", batch(retryStrategy={"attempts": 2, "evaluateOnExit": [{"action": "again"}]}),
      "retryStrategy.evaluateOnExit[0].action: must be RETRY or EXIT, got 'again'", suffix=".json"),
    # -- options
    Opt("--nodes 0", ["launch", "--nodes", "0", "{job}"], "'--nodes': 0 is not in the range 1<=x<=1000"),
    Opt("--nodes 100000", ["launch", "--nodes", "100000", "{job}"], "'--nodes': 100000 is not in the range"),
    Opt("--nodes word", ["launch", "--nodes", "many", "{job}"], "'--nodes': 'many' is not a valid integer"),
    Opt("MNP_NODES word", ["launch", "{job}"], "'--nodes': 'x' is not a valid integer", env={"MNP_NODES": "x"}),
    Opt("--nodes no value", ["launch", "{job}", "--nodes"], "Option '--nodes' requires an argument"),
    Opt("--grace nan", ["launch", "--grace", "nan", "{job}"], "'--grace': 'nan' is not a number of seconds"),
    Opt("--grace inf", ["launch", "--grace", "inf", "{job}"], "'--grace': inf is not in the range 0<=x<=86400"),
    Opt("--grace -1", ["launch", "--grace", "-1", "{job}"], "'--grace': -1.0 is not in the range"),
    Opt("--grace 2 days", ["launch", "--grace", "172800", "{job}"], "'--grace': 172800.0 is not in the range"),
    Opt("--grace word", ["launch", "--grace", "soon", "{job}"], "'--grace': 'soon' is not a valid float"),
    Opt("MNP_GRACE nan", ["launch", "{job}"], "MNP_GRACE: 'NaN' must be a finite number of seconds",
        env={"MNP_GRACE": "NaN"}),
    Opt("unknown option", ["launch", "--bogus", "{job}"], "No such option '--bogus'"),
    Opt("--ssh-port 0", ["launch", "--ssh-port", "0", "{job}"], "'--ssh-port': 0 is not in the range 1<=x<=65535"),
    Opt("--ssh-port 70000", ["launch", "--ssh-port", "70000", "{job}"], "'--ssh-port': 70000 is not in the range"),
    Opt("--fanout 0", ["launch", "--fanout", "0", "{job}"], "'--fanout': 0 is not in the range x>=1"),
    Opt("--connect-timeout 0", ["launch", "--connect-timeout", "0", "{job}"], "'--connect-timeout': 0.0 is not in"),
    Opt("no job file", ["launch"], "Missing argument 'JOB_FILE'"),
    Opt("extra argument", ["launch", "{job}", "more"], "Got unexpected extra argument (more)"),
    Opt("--hostfile and --hosts", ["launch", "--hostfile", "{job}", "--hosts", "h1", "{job}"],
      "--hostfile and --hosts: give one or the other"),
    Opt("--hosts blank", ["launch", "--hosts", " ", "{job}"], "--hosts: empty"),
    Opt("--hosts empty string", ["launch", "--hosts", "", "{job}"], "--hosts: empty"),
    Opt("--connect-timeout nan", ["launch", "--connect-timeout", "nan", "{job}"],
      "'--connect-timeout': 'nan' is not a number of seconds"),
    Opt("node --dead-after nan", ["node", "--dead-after", "nan"], "'--dead-after': 'nan' is not a number of seconds"),
    Opt("doctor --nodes 100000", ["doctor", "--nodes", "100000"], "'-n' / '--nodes': 100000 is not in the range"),
    Opt("--hosts empty item", ["launch", "--hosts", "h1,,h2", "{job}"], "--hosts: empty item in 'h1,,h2'"),
    Opt("--hosts twice", ["launch", "--hosts", "h1,h1:2", "{job}"], "--hosts: 'h1:2': host 'h1' is listed twice"),
    Opt("--hosts bad name", ["launch", "--hosts", "bad!", "{job}"], "--hosts: 'bad!': 'bad!' is not a valid host name"),
    Opt("--hosts slots 0", ["launch", "--hosts", "h:0", "{job}"], "--hosts: 'h:0': slots must be a positive integer"),
    Opt("--hosts newline", ["launch", "--hosts", "h1\nh2", "{job}"], "--hosts: 'h1\\nh2': items are [user@]host[:N]"),
    Opt("top-level option", ["--bogus", "launch", "{job}"], "No such option '--bogus'"),
    Opt("unknown command", ["lunch", "{job}"], "No such command 'lunch'"),
    Opt("status without job", ["status"], "Missing argument 'JOB'"),
    Opt("logs --node word", ["logs", "abc", "--node", "q"], "'--node': 'q' is not a valid integer"),
    # -- hostfiles
    H("hostfile slots", "a\nb:x\n", "hosts:2: slots must be a positive integer, got 'x'"),
    H("hostfile duplicate", "a\nb\nA\n", "hosts:3: host 'A' is already listed on line 1"),
    H("hostfile empty", "# nothing\n", "hosts: no hosts (the hostfile is empty or has only comments)"),
    H("hostfile unknown key", "a cpu=4\n", "hosts:1: unknown key 'cpu'"),
    H("hostfile user", "1bad@a\n", "hosts:1: '1bad' is not a valid user name"),
    H("hostfile IPv6", "fe80::1\n", "hosts:1: 'fe80::1': write an IPv6 address in brackets"),
    H("hostfile NUL", b"a\x00b\n", "hosts:1: 'a\\x00b' is not a valid host name"),
    H("hostfile binary", bytes(range(128, 256)), "cannot read hostfile: not UTF-8 text"),
    H("hostfile FIFO", FIFO, "cannot read hostfile: not a regular file (a FIFO)"),
    H("hostfile missing", MISSING, "cannot read hostfile: No such file or directory"),
    H("hostfile dir", DIRECTORY, "Invalid value for '--hostfile'"),
]


def _place(path: Path, content: str | bytes | None) -> str:
    if content == FIFO:
        os.mkfifo(path)
    elif content == DEVZERO:
        return "/dev/zero"
    elif content == DIRECTORY:
        path.mkdir()
    elif content == MISSING:
        pass
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    return str(path)


def _args(case: Case, tmp: Path) -> list[str]:
    job = _place(tmp / f"job{case.suffix}", case.job)
    hosts = _place(tmp / "hosts", case.hosts)
    return [a.replace("{job}", job).replace("{hosts}", hosts) for a in case.args]


def jobs_recorded(home: Path) -> int:
    db = home / "mnp.db"
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db)) as c:
        return int(c.execute("SELECT count(*) FROM jobs").fetchone()[0])


def invoke(args: list[str], home: Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, args, prog_name="mnp", env={**CLEAN_ENV, "MNP_HOME": str(home), **(env or {})})


def assert_one_error_line(r: Result, expect: str = "") -> None:
    assert r.exit_code == 2, (r.exit_code, r.stderr, r.exception)
    assert isinstance(r.exception, SystemExit), r.exception  # no other exception escaped
    assert "Traceback" not in r.output and "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mnp: error: "), r.stderr
    assert expect in lines[0], lines[0]


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case: Case, tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = invoke(_args(case, tmp_path), home, case.env)
    assert_one_error_line(r, case.expect)
    assert r.stdout == ""
    assert jobs_recorded(home) == 0
    assert not (home / "jobs").exists() or not any((home / "jobs").iterdir())


PROCESS_CASES = [c for c in CASES if c.id in (
    "a FIFO", "/dev/zero", "binary junk", "duplicate key", "--nodes 100000", "--grace nan", "unknown option",
    "hostfile FIFO", "batch unknown key", "deep nesting")]


@pytest.mark.parametrize("case", PROCESS_CASES, ids=[c.id for c in PROCESS_CASES])
def test_bad_input_as_a_process(case: Case, tmp_path: Path, mnp_home: Path) -> None:
    """The real `mnp` process: nothing hangs (a FIFO is never opened for a blocking read), one line, exit 2."""
    p = run_mnp(_args(case, tmp_path), mnp_home, timeout=30, env={k: "" for k in CLEAN_ENV if k != "MNP_DEBUG"})
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mnp: error: ") and case.expect in lines[0], p.stderr
    assert jobs_recorded(mnp_home) == 0


# --- property-based -----------------------------------------------------------------------------------------------

FIELDS = ["name", "nodes", "main_node", "ranks_per_node", "command", "env", "mpi", "launcher", "shm_size",
          "bind_to", "map_by", "transport", "timeout", "workdir", "retry", "node_ranges"]
_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True), _text,
                     st.sampled_from(["0:", ":2", "1:3", "0", "retry", "exit", "512Mi", "auto", "x\0y", "a b"]))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(FIELDS), _text), inner, max_size=4)),
    max_leaves=12)
_ranges = st.lists(st.fixed_dictionaries({"target_nodes": st.sampled_from(["0:", ":1", "1:3", "0", "2", "x"])},
                                         optional={"command": _values, "env": _values, "ranks_per_node": _values}),
                   max_size=4)
_documents = st.dictionaries(st.sampled_from(FIELDS + ["nodez", "target_nodes"]), _values, max_size=6).flatmap(
    lambda d: st.fixed_dictionaries({}, optional={"command": st.sampled_from(["true", ["a", 1]]),
                                                  "node_ranges": _ranges}).map(lambda extra: {**d, **extra}))


def _batch_documents() -> st.SearchStrategy[Any]:
    base = json.loads(batch())
    paths = [("nodeProperties", "numNodes"), ("nodeProperties", "mainNode"), ("type",), ("timeout",),
             ("retryStrategy",), ("parameters",), ("nodeProperties", "nodeRangeProperties"),
             ("nodeProperties", "nodeRangeProperties", 0, "targetNodes"),
             ("nodeProperties", "nodeRangeProperties", 0, "container", "command"),
             ("nodeProperties", "nodeRangeProperties", 0, "container", "environment"),
             ("nodeProperties", "extra"), ("jobDefinitionName",)]

    def mutate(choice: tuple[tuple[Any, ...], Any]) -> Any:
        path, value = choice
        doc = json.loads(json.dumps(base))
        cur = doc
        for k in path[:-1]:
            cur = cur[k]
        cur[path[-1]] = value
        return doc

    return st.tuples(st.sampled_from(paths), _values).map(mutate)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("badinput")


def _check_document(doc: Any, path: Path, as_json: bool) -> None:
    try:
        path.write_text(json.dumps(doc) if as_json else yaml.safe_dump(doc, allow_unicode=True))
    except (ValueError, yaml.YAMLError):  # not representable (e.g. NaN in strict JSON); nothing to check
        return
    try:
        spec = load_spec(path)
    except SpecError as e:
        assert "\n" not in str(e) and str(e).startswith(f"{path}: ") and e.exit_code == 2
        return
    assert isinstance(spec, JobSpec)
    try:
        work = resolve_nodes(spec, str(path))
    except SpecError as e:
        assert "\n" not in str(e)
        return
    assert len(work) == spec.nodes and all(w.command for w in work)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_documents)
def test_generated_job_documents_validate_or_name_a_field(doc: dict[str, Any], scratch: Path) -> None:
    _check_document(doc, scratch / "gen.yaml", as_json=False)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_batch_documents())
def test_generated_batch_documents_validate_or_name_a_field(doc: dict[str, Any], scratch: Path) -> None:
    _check_document(doc, scratch / "gen.json", as_json=True)


_OPTIONS = ["--nodes", "-n", "--grace", "--json", "--isolate", "--no-isolate", "--hostfile", "--hosts", "--local",
            "--ssh-user", "--ssh-port", "--ssh-key", "--known-hosts", "--ssh-config", "--connect-timeout",
            "--fanout", "--remote-python", "--insecure-no-host-key-check", "--iface", "--remount-shm", "--explain",
            "--bogus", "-x", "--", "--help"]
_words = st.one_of(
    st.sampled_from(_OPTIONS),
    st.sampled_from(["0", "-1", "1", "1000", "1001", "100000", "nan", "inf", "-inf", "1e999", "", " ", "h1,h2",
                     "h1,,h2", "a@b:0", "[::1]:2", "0x10", "5", "1.5", "86401"]),
    st.text(alphabet=string.printable.strip() + "é", max_size=8))
BAD_JOB = "command: x\nnodez: 1\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=st.lists(_words, max_size=6))
def test_generated_launch_arguments_exit_0_or_2(argv: list[str], scratch: Path) -> None:
    """Whatever the options, `mnp launch` of an invalid job file ends in 0 (--help) or 2, never a traceback."""
    job = scratch / "bad.yaml"
    job.write_text(BAD_JOB)
    (scratch / "hostsfile").write_text("h1\nh1\n")
    home = scratch / "home"
    with contextlib.chdir(scratch):  # relative words name nothing but these invalid files
        r = invoke(["launch", *argv, str(job)], home)
    assert r.exit_code in (0, 2), (argv, r.exit_code, r.stderr, r.exception)
    assert isinstance(r.exception, (SystemExit, type(None))), (argv, r.exception)
    assert "Traceback" not in r.output + r.stderr
    if r.exit_code == 2:
        assert_one_error_line(r)
    assert jobs_recorded(home) == 0
