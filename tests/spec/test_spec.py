"""Job file validation: good files load, bad ones name the field (and exit 2 through the CLI, no traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_mnp

from mnp.errors import SpecError
from mnp.spec.model import load_spec, parse_size, spec_from_dict

pytestmark = pytest.mark.noroot


def test_defaults_and_string_command() -> None:
    s = spec_from_dict({"command": "python -c 'print(1)'"}, default_name="hello")
    assert s.name == "hello" and s.nodes == 1 and s.main_node == 0 and s.ranks_per_node is None
    assert s.command == ["python", "-c", "print(1)"]
    assert s.mpi == "auto" and s.transport == "auto" and s.shm_size is None and s.timeout is None


def test_full_job() -> None:
    s = spec_from_dict({"name": "md", "nodes": 4, "main_node": 1, "ranks_per_node": 2, "command": ["a", 1],
                        "env": {"A": 1, "B": "x", "C": True}, "mpi": "mpich", "shm_size": "512Mi",
                        "transport": "tcp", "timeout": 30,
                        "node_ranges": [{"target_nodes": "0:", "env": {"X": "1"}},
                                        {"target_nodes": "1", "command": "b", "ranks_per_node": 1}]})
    assert s.command == ["a", "1"] and s.env == {"A": "1", "B": "x", "C": "true"}
    assert s.shm_size == 512 * 2**20
    assert s.node_ranges[1].command == ["b"] and str(s.node_ranges[0].target_nodes) == "0:"


@pytest.mark.parametrize("text,value", [("512Mi", 512 << 20), ("1Gi", 1 << 30), ("64M", 64_000_000),
                                        ("2g", 2_000_000_000), (4096, 4096), ("1.5Gi", 3 << 29), ("100", 100)])
def test_sizes(text: str | int, value: int) -> None:
    assert parse_size(text) == value


BAD = [
    ({"command": "x", "nodez": 2}, "nodez", "unknown field"),
    ({"command": "x", "nodes": 0}, "nodes", "must be at least 1, got 0"),
    ({"command": "x", "nodes": "four"}, "nodes", "must be an integer, got a string"),
    ({"command": "x", "main_node": -1}, "main_node", ""),
    ({"command": "x", "ranks_per_node": 0}, "ranks_per_node", ""),
    ({"command": ""}, "command", "must not be empty"),
    ({"command": {"a": 1}}, "command", "string or a list"),
    ({"command": "x", "env": {"1BAD": "v"}}, "env", "not a valid environment variable name"),
    ({"command": "x", "env": ["A=1"]}, "env", "map"),
    ({"command": "x", "mpi": "intel"}, "mpi", "'intel' is not one of 'mpich', 'openmpi', 'impi', 'auto'"),
    ({"command": "x", "transport": "ib"}, "transport", ""),
    ({"command": "x", "shm_size": "lots"}, "shm_size", "not a size"),
    ({"command": "x", "timeout": 0}, "timeout", "must be more than 0, got 0"),
    ({"command": "x", "name": "bad name!"}, "name", "'bad name!' does not match"),
    ({"nodes": 2}, "command", "needs a command"),
    ({"command": "x", "node_ranges": [{"target_nodes": "a:b"}]}, "node_ranges[0].target_nodes", "not a node range"),
    ({"command": "x", "node_ranges": [{"target_nodes": "3:1"}]}, "node_ranges[0].target_nodes", "ends before"),
    ({"command": "x", "node_ranges": [{"target_nodes": "0:", "cmd": "y"}]}, "node_ranges[0].cmd", "unknown field"),
    ({"command": "x", "node_ranges": [{}]}, "node_ranges[0].target_nodes", "required field is missing"),
    ({"command": "x", "node_ranges": [{"target_nodes": "0", "env": {"A": [1]}}]}, "node_ranges[0].env", "A"),
    ({"command": "x", "node_ranges": "0:"}, "node_ranges", "must be a list"),
    ({"command": "x", "timeout": True}, "timeout", "got true or false"),
]


@pytest.mark.parametrize("data,field,problem", BAD)
def test_bad_fields_are_named(data: dict, field: str, problem: str) -> None:
    with pytest.raises(SpecError) as e:
        spec_from_dict(data, "job.yaml")
    assert e.value.field == field
    assert problem in e.value.problem
    assert str(e.value).startswith(f"job.yaml: {field}: ")


def test_not_a_map(tmp_path: Path) -> None:
    p = tmp_path / "j.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="must be a YAML map"):
        load_spec(p)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    p = tmp_path / "j.yaml"
    p.write_text("name: x\ncommand: [a, b\nnodes: 2\n")
    with pytest.raises(SpecError, match=r"line \d+: invalid YAML"):
        load_spec(p)


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "j.yaml"
    p.write_text("command: x\nnode_ranges:\n  - target_nodes: '0:'\n    env: {A: 1, B: 2, A: 3}\n")
    with pytest.raises(SpecError) as e:
        load_spec(p)
    assert (e.value.field, e.value.problem) == ("node_ranges[0].env.A", "is given twice on line 4")


def test_merge_keys_may_override(tmp_path: Path) -> None:
    """A YAML merge (<<) is not a duplicate: the explicit key wins, as YAML says."""
    p = tmp_path / "j.yaml"
    p.write_text("command: x\nnode_ranges:\n  - &base {target_nodes: '0:', env: {A: '1'}}\n"
                 "  - <<: *base\n    target_nodes: '0'\n")
    spec = load_spec(p)
    assert [str(r.target_nodes) for r in spec.node_ranges] == ["0:", "0"]
    assert spec.node_ranges[1].env == {"A": "1"}


def test_default_name_from_a_long_or_odd_file_name(tmp_path: Path) -> None:
    p = tmp_path / ("-my job " + "x" * 200 + ".yaml")
    p.write_text("command: x\n")
    name = load_spec(p).name
    assert name.startswith("my-job-x") and len(name) == 128


def test_nodes_override_is_bounded() -> None:
    spec = spec_from_dict({"command": "x"})
    assert spec.with_nodes(1000).nodes == 1000
    for bad in (0, 1001, 100000):
        with pytest.raises(SpecError, match=r"^nodes: must be from 1 to 1000"):
            spec.with_nodes(bad)


CLI_BAD = [
    ("nodes: 2\ncommand: x\nfoo: 1\n", [], "foo: unknown field"),
    ("nodes: 2\n", [], "command: a job needs a command"),
    ("nodes: 2\ncommand: x\nmain_node: 5\n", [], "main_node: is 5, but the job has 2 node(s)"),
    ("command: x\nnode_ranges:\n  - target_nodes: '1:'\n", ["--nodes", "3"], "node_ranges: node(s) 0 are not covered"),
    ("command: x\nnode_ranges:\n  - target_nodes: '0:5'\n", ["--nodes", "3"], "node_ranges[0].target_nodes"),
    ("command: x\ntransport: shm\n", ["--nodes", "2"], "transport: 'shm' works within one node only"),
    ("command: x\nnodes: [1\n", [], "invalid YAML"),
    ("command: x\n", ["--nodes", "0"], "--nodes"),
    ("command: x\n", ["--bogus"], "No such option"),
]


@pytest.mark.parametrize("text,args,message", CLI_BAD)
def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path, mnp_home: Path, text: str, args: list[str],
                                             message: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    r = run_mnp(["launch", *args, str(p)], mnp_home, timeout=60)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mnp: error: ")  # Click's usage errors too
    assert not (mnp_home / "jobs").exists() or not any((mnp_home / "jobs").iterdir())  # nothing started


def test_cli_missing_file(tmp_path: Path, mnp_home: Path) -> None:
    r = run_mnp(["launch", str(tmp_path / "nope.yaml")], mnp_home, timeout=60)
    assert r.returncode == 2 and "cannot read job file" in r.stderr


def test_status_unknown_job(mnp_home: Path) -> None:
    r = run_mnp(["status", "feedbeef"], mnp_home, timeout=60)
    assert r.returncode == 2 and "no such job" in r.stderr
