"""`processes:` and `ranks_depend_on:` in job files and Batch multi-container job definitions: what is accepted,
how each node's share resolves, and one-line errors naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mnp.errors import SpecError
from mnp.spec.batchdef import load_batch_jobdef
from mnp.spec.model import load_spec, spec_from_dict
from mnp.spec.processes import dependency_cycle
from mnp.spec.resolve import resolve_nodes

pytestmark = pytest.mark.noroot


def _p(name: str, *deps: tuple[str, str], **kw: Any) -> dict[str, Any]:
    return {"name": name, "command": f"run-{name}", "depends_on": [{"name": n, "condition": c} for n, c in deps],
            **kw}


def test_defaults_follow_ecs() -> None:
    spec = spec_from_dict({"command": "app", "processes": [_p("db", health={"command": ["pg_isready"]})]})
    p = spec.processes[0]
    assert p.essential is True and p.command == ["run-db"] and p.env == {}
    assert p.health is not None and (p.health.interval, p.health.timeout, p.health.retries,
                                     p.health.start_period) == (30.0, 5.0, 3, 0.0)


def test_each_node_runs_the_top_level_and_its_innermost_range() -> None:
    spec = spec_from_dict({"nodes": 3, "command": "app", "processes": [_p("tele", essential=False)],
                           "ranks_depend_on": [{"name": "tele", "condition": "START"}],
                           "node_ranges": [{"target_nodes": "0:", "processes": [_p("outer")]},
                                           {"target_nodes": "1", "processes": [_p("inner", ("tele", "START"))],
                                            "ranks_depend_on": []}]})
    work = resolve_nodes(spec)
    assert [[p.name for p in w.processes] for w in work] == [["tele", "outer"], ["tele", "inner"], ["tele", "outer"]]
    assert [[d.name for d in w.ranks_depend_on] for w in work] == [["tele"], [], ["tele"]]


def test_a_job_of_processes_only_runs_no_ranks() -> None:
    work = resolve_nodes(spec_from_dict({"nodes": 2, "processes": [_p("main")]}))
    assert [(w.command, w.ranks_per_node) for w in work] == [([], 0), ([], 0)]


BAD = [
    ("unknown dependency", {"command": "a", "processes": [_p("a", ("b", "START"))]},
     "processes[0].depends_on[0].name", "no process named 'b' runs on these nodes (the top level's processes: a)"),
    ("self cycle", {"command": "a", "processes": [_p("a", ("a", "START"))]},
     "processes[0].depends_on", "dependency cycle: a -> a"),
    ("cycle", {"command": "a", "processes": [_p("a", ("c", "START")), _p("b", ("a", "START")),
                                             _p("c", ("b", "START"))]},
     "processes[0].depends_on", "dependency cycle: a -> c -> b -> a"),
    ("healthy without health", {"command": "a", "processes": [_p("a"), _p("b", ("a", "HEALTHY"))]},
     "processes[1].depends_on[0].condition", "HEALTHY needs a health check, and 'a' has no 'health'"),
    ("success on essential", {"command": "a", "processes": [_p("a"), _p("b", ("a", "SUCCESS"))]},
     "processes[1].depends_on[0].condition", "SUCCESS cannot be set on an essential process ('a' ending would "
     "end the node's work); make it essential: false"),
    ("bad condition", {"command": "a", "processes": [_p("a", essential=False), _p("b", ("a", "READY"))]},
     "processes[1].depends_on[0].condition", "'READY' is not one of 'START', 'COMPLETE', 'SUCCESS', 'HEALTHY'"),
    ("duplicate", {"command": "a", "processes": [_p("a"), _p("a")]},
     "processes[1].name", "'a' clashes with another entry of this list"),
    ("clash with top", {"command": "a", "processes": [_p("a")],
                        "node_ranges": [{"target_nodes": "0:", "processes": [_p("a")]}]},
     "node_ranges[0].processes[0].name", "'a' clashes with the top level's processes"),
    ("reserved", {"command": "a", "processes": [_p("rank0")]},
     "processes[0].name", "'rank0' is reserved (the ranks' own names: rankN, launcher, ranks)"),
    ("bad name", {"command": "a", "processes": [_p("no.dots")]},
     "processes[0].name", "'no.dots' does not match ^[A-Za-z][A-Za-z0-9_-]{0,62}$"),
    ("unknown field", {"command": "a", "processes": [_p("a", image="x")]}, "processes[0].image", "unknown field"),
    ("no command", {"command": "a", "processes": [{"name": "a"}]}, "processes[0].command",
     "required field is missing"),
    ("shell syntax", {"command": "a", "processes": [{"name": "a", "command": "a | b"}]}, "processes[0].command",
     "'|' is shell syntax, and mnp runs the command without a shell; write [\"sh\", \"-c\", \"a | b\"]"),
    ("health interval", {"command": "a", "processes": [_p("a", health={"command": "c", "interval": 0})]},
     "processes[0].health.interval", "must be more than 0, got 0"),
    ("health command", {"command": "a", "processes": [_p("a", health={"command": ""})]},
     "processes[0].health.command", "must not be empty"),
    ("env name", {"command": "a", "processes": [_p("a", env={"1X": "y"})]},
     "processes[0].env", "'1X' is not a valid environment variable name"),
    ("ranks depend on unknown", {"command": "a", "ranks_depend_on": [{"name": "db", "condition": "START"}]},
     "ranks_depend_on[0].name", "no process named 'db' runs on these nodes (the top level's processes: none)"),
    ("range dependency", {"command": "a", "node_ranges": [{"target_nodes": "0:", "processes": [
        _p("b", ("c", "START"))]}]}, "node_ranges[0].processes[0].depends_on[0].name",
     "no process named 'c' runs on these nodes (node_ranges[0] and the top level: b)"),
]


@pytest.mark.parametrize("doc, field, problem", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_errors_name_the_field(doc: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(SpecError) as e:
        spec_from_dict(doc, "job.yaml")
    assert (e.value.field, e.value.problem) == (field, problem)


@pytest.mark.parametrize("doc, field, problem", [
    ({"nodes": 2, "processes": [_p("side", essential=False)]}, "processes",
     "node 0 has nothing to run: a job without a command needs an essential process on every node"),
    ({"nodes": 2, "node_ranges": [{"target_nodes": "0", "command": "app"}, {"target_nodes": "1",
                                                                         "processes": [_p("p")]}]},
     "node_ranges[1].command", "node 1 has no command (give one here or at the top level)"),
    ({"processes": [_p("p")], "ranks_depend_on": [{"name": "p", "condition": "START"}]},
     "ranks_depend_on", "the job has no command, so no ranks to start"),
    ({"nodes": 2, "command": "a", "processes": [_p("p", essential=False)],
      "ranks_depend_on": [{"name": "p", "condition": "START", "node": 2}]},
     "ranks_depend_on[0].node", "is 2, but the job has 2 node(s) (0..1)"),
    ({"nodes": 2, "node_ranges": [{"target_nodes": "0", "processes": [_p("server")]},
                                  {"target_nodes": "1", "processes": [
                                      {**_p("ex"), "depends_on": [{"name": "srv", "condition": "START",
                                                                   "node": 0}]}]}]},
     "node_ranges[1].processes[0].depends_on[0].name", "no process named 'srv' runs on node 0"),
    ({"nodes": 2, "node_ranges": [{"target_nodes": "0", "processes": [_p("server")]},
                                  {"target_nodes": "1", "processes": [
                                      {**_p("ex"), "depends_on": [{"name": "server", "condition": "HEALTHY",
                                                                   "node": 0}]}]}]},
     "node_ranges[1].processes[0].depends_on[0].condition", "HEALTHY needs a health check, and 'server' has no "
     "'health'"),
    ({"nodes": 2, "node_ranges": [
        {"target_nodes": "0", "processes": [{**_p("a"), "depends_on": [{"name": "b", "condition": "START",
                                                                         "node": 1}]}]},
        {"target_nodes": "1", "processes": [{**_p("b"), "depends_on": [{"name": "a", "condition": "START",
                                                                         "node": 0}]}]}]},
     "node_ranges[0].processes[0].depends_on", "dependency cycle across nodes: a@0 -> b@1 -> a@0"),
])
def test_node_level_errors(doc: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(SpecError) as e:
        resolve_nodes(spec_from_dict(doc, "job.yaml"), "job.yaml")
    assert (e.value.field, e.value.problem) == (field, problem)


def test_dependency_cycle_finder() -> None:
    assert dependency_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    assert dependency_cycle({"a": ["b"], "b": ["c"], "c": ["b"]}) == ["b", "c", "b"]
    assert dependency_cycle({"x": [], "y": ["x", "y"]}) == ["y", "y"]


def _task(*containers: dict[str, Any]) -> dict[str, Any]:
    return {"taskProperties": [{"containers": list(containers), "taskRoleArn": "arn:aws:iam::1:role/x"}]}


def _mnp(*ranges: dict[str, Any]) -> dict[str, Any]:
    return {"jobDefinitionName": "mc", "type": "multinode",
            "nodeProperties": {"numNodes": 2, "mainNode": 0, "nodeRangeProperties": list(ranges)}}


def test_batch_containers_become_processes() -> None:
    doc = _mnp({"targetNodes": "0:", "ecsProperties": _task(
        {"name": "server", "image": "repo/server:1", "command": ["serve", "Ref::port"],
         "environment": [{"name": "MODE", "value": "fast"}], "essential": True,
         "resourceRequirements": [{"type": "MEMORY", "value": "512"}]},
        {"name": "agent", "image": "repo/agent:1", "command": ["drive"],
         "dependsOn": [{"containerName": "server", "condition": "START"}]},
        {"name": "tele", "image": "repo/tele:1", "command": ["poll"], "essential": False})})
    doc["parameters"] = {"port": "8080"}
    spec = load_batch_jobdef(doc, "jd.json")
    procs = spec.node_ranges[0].processes
    assert [(p.name, p.command, p.env, p.essential) for p in procs] == [
        ("server", ["serve", "8080"], {"MODE": "fast"}, True), ("agent", ["drive"], {}, True),
        ("tele", ["poll"], {}, False)]
    assert procs[1].depends_on[0].name == "server" and procs[1].depends_on[0].condition == "START"
    assert [w.command for w in resolve_nodes(spec)] == [[], []]


def test_batch_single_node_ecs_job() -> None:
    spec = load_batch_jobdef({"jobDefinitionName": "one", "type": "container",
                              "ecsProperties": _task({"name": "a", "image": "x", "command": ["true"]})}, "jd.json")
    assert spec.nodes == 1 and [p.name for p in spec.processes] == ["a"]


@pytest.mark.parametrize("containers, field, problem", [
    ([{"name": "a", "command": ["x"], "dependsOn": [{"containerName": "b", "condition": "START"}]}],
     "containers[0].dependsOn[0].containerName", "no process named 'b' runs on these nodes (this task's "
     "containers: a)"),
    ([{"name": "a", "command": ["x"]}, {"name": "b", "command": ["y"], "dependsOn": [
        {"containerName": "a", "condition": "HEALTHY"}]}],
     "containers[1].dependsOn[0].condition", "'HEALTHY' is not one of 'START', 'COMPLETE', 'SUCCESS'"),
    ([{"name": "a", "command": ["x"]}, {"name": "b", "command": ["y"], "dependsOn": [
        {"containerName": "a", "condition": "COMPLETE"}]}],
     "containers[1].dependsOn[0].condition", "COMPLETE cannot be set on an essential process ('a' ending would "
     "end the node's work); make it essential: false"),
    ([{"name": "a", "command": ["x"]}, {"name": "a", "command": ["y"]}], "containers[1].name",
     "'a' clashes with another entry of this list"),
    ([{"name": "my.server", "command": ["x"]}], "containers[0].name",
     "'my.server': mnp needs a name of letters, digits, '-' and '_' that starts with a letter (at most 63 "
     "characters)"),
    ([{"name": "a", "command": ["x"], "environment": [{"name": "AWS_BATCH_X", "value": "1"}]}],
     "containers[0].environment[0].name", "'AWS_BATCH_X': names starting with AWS_BATCH are reserved for Batch"),
    ([{"name": "a"}], "containers[0].command",
     "required field is missing: mnp runs the command itself and cannot fall back to the image's CMD"),
])
def test_batch_errors_name_the_batch_field(containers: list[dict[str, Any]], field: str, problem: str) -> None:
    with pytest.raises(SpecError) as e:
        load_batch_jobdef(_mnp({"targetNodes": "0:", "ecsProperties": _task(*containers)}), "jd.json")
    base = "nodeProperties.nodeRangeProperties[0].ecsProperties.taskProperties[0]."
    assert (e.value.field, e.value.problem) == (base + field, problem)


ROOT = Path(__file__).resolve().parents[2]


def test_the_maze_example_and_the_readme_example_validate() -> None:
    maze = load_spec(ROOT / "examples/maze/job.yaml")
    work = resolve_nodes(maze)
    assert [[p.name for p in w.processes] for w in work] == [["server", "telemetry"], ["explorer"]]
    readme = (ROOT / "README.md").read_text().split("## Multi-process nodes", 1)[1]
    block = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    work = resolve_nodes(spec_from_dict(yaml.safe_load(block), "README.md", default_name="readme").with_nodes(3))
    assert [[p.name for p in w.processes] for w in work] == [["telemetry", "db", "loader"], ["telemetry"],
                                                             ["telemetry"]]
    assert [(d.name, d.node) for d in work[1].ranks_depend_on] == [("loader", 0)]


def test_dry_run_shows_each_nodes_processes(tmp_path: Path) -> None:
    from conftest import run_mnp

    p = run_mnp(["launch", "--dry-run", "examples/maze/job.yaml"], tmp_path, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert "ranks      0 (0 per node)" in p.stdout
    assert "process telemetry, non-essential: python examples/maze/telemetry.py  (after server:START)" in p.stdout
    assert "process explorer: python examples/maze/explorer.py  (after server@node0:START)" in p.stdout
