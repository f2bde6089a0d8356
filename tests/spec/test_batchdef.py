"""AWS Batch multi-node job definitions -> the JobSpec mnp runs (retry strategy included)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

import mnp.spec.retry
from mnp.errors import SpecError
from mnp.spec.batchdef import RetryRule, RetryStrategy, is_batch_jobdef, load_batch_jobdef
from mnp.spec.jobspec import JobSpec
from mnp.spec.model import spec_from_dict
from mnp.spec.resolve import resolve_nodes

pytestmark = pytest.mark.noroot

EXAMPLE = Path(__file__).resolve().parents[2] / "containers" / "jobdef-example.json"


def example() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text())
    return data


def minimal(**top: Any) -> dict[str, Any]:
    """The smallest valid multi-node job definition, with top-level keys replaced by ``top``."""
    d: dict[str, Any] = {
        "jobDefinitionName": "tiny",
        "type": "multinode",
        "nodeProperties": {
            "numNodes": 2,
            "mainNode": 0,
            "nodeRangeProperties": [{"targetNodes": "0:", "container": {"command": ["true"]}}],
        },
    }
    d.update(top)
    return d


def with_range(**container: Any) -> dict[str, Any]:
    d = minimal()
    d["nodeProperties"]["nodeRangeProperties"][0]["container"].update(container)
    return d


def set_path(d: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Return a copy of d with the dotted/indexed path set (``a.b[1].c``)."""
    out = copy.deepcopy(d)
    parts: list[str | int] = []
    for piece in path.split("."):
        name, *idx = piece.replace("]", "").split("[")
        parts.append(name)
        parts.extend(int(i) for i in idx)
    cur: Any = out
    for p in parts[:-1]:
        cur = cur[p]
    cur[parts[-1]] = value
    return out


def del_path(d: dict[str, Any], path: str) -> dict[str, Any]:
    out = set_path(d, path, None)
    parts = path.rsplit(".", 1)
    parent: Any = out
    if len(parts) == 2:
        for piece in parts[0].split("."):
            name, *idx = piece.replace("]", "").split("[")
            parent = parent[name]
            for i in idx:
                parent = parent[int(i)]
    del parent[parts[-1]]
    return out




# --- the example file -------------------------------------------------------------------------------------------

def test_example_is_a_batch_jobdef() -> None:
    d = example()
    assert is_batch_jobdef(d)
    assert d["type"] == "multinode"
    assert d["nodeProperties"]["numNodes"] == 4
    assert len(d["nodeProperties"]["nodeRangeProperties"]) == 2


EXAMPLE_RETRY = RetryStrategy(3, (
    RetryRule("RETRY", on_status_reason="Host EC2*"),
    RetryRule("RETRY", on_exit_code="137"),
    RetryRule("EXIT", on_reason="CannotPullContainerError*"),
    RetryRule("EXIT", on_exit_code="*"),
))


def test_example_translates() -> None:
    """The job definition is the same job as its mnp YAML spelling."""
    spec = load_batch_jobdef(example(), str(EXAMPLE))
    assert spec == spec_from_dict({
        "name": "mnp-mpi4py-hello",
        "nodes": 4,
        "main_node": 0,
        "node_ranges": [
            {"target_nodes": "0", "command": ["python3", "-m", "mpi4py.bench", "helloworld"],
             "env": {"MNP_EXAMPLE_ROLE": "main", "OMP_NUM_THREADS": "1"}},
            {"target_nodes": "1:", "command": ["python3", "-m", "mpi4py.bench", "helloworld"],
             "env": {"MNP_EXAMPLE_ROLE": "worker", "OMP_NUM_THREADS": "1"}},
        ],
        "shm_size": "4096Mi",
        "timeout": 3600,
        "retry": {"attempts": 3, "evaluate_on_exit": [
            {"on_status_reason": "Host EC2*", "action": "retry"}, {"on_exit_code": "137", "action": "retry"},
            {"on_reason": "CannotPullContainerError*", "action": "exit"}, {"on_exit_code": "*", "action": "exit"}]},
    })
    assert spec.retry == EXAMPLE_RETRY


def test_example_validates_as_an_mnp_job() -> None:
    spec = load_batch_jobdef(example(), str(EXAMPLE))
    assert spec.name == "mnp-mpi4py-hello"
    assert spec.nodes == 4 and spec.main_node == 0
    assert spec.shm_size == 4096 * 1024 * 1024
    assert spec.timeout == 3600
    work = resolve_nodes(spec)
    assert [w.env["MNP_EXAMPLE_ROLE"] for w in work] == ["main", "worker", "worker", "worker"]
    assert all(w.command == ["python3", "-m", "mpi4py.bench", "helloworld"] for w in work)


def test_input_is_not_modified() -> None:
    d = example()
    before = copy.deepcopy(d)
    load_batch_jobdef(d, "x.json")
    assert d == before


def test_result_round_trips_through_an_mnp_job_file() -> None:
    """What a job definition becomes can be written as an mnp job (JSON, so YAML too) and read back unchanged."""
    spec = load_batch_jobdef(example(), "x.json")
    text = json.dumps(msgspec.to_builtins(spec, enc_hook=str))
    assert spec_from_dict(json.loads(text)) == spec


def test_retry_types_are_the_spec_s_own() -> None:
    """One representation of retry rules: the names batchdef exports are mnp.spec.retry's."""
    assert RetryRule is mnp.spec.retry.RetryRule and RetryStrategy is mnp.spec.retry.RetryStrategy


# --- is_batch_jobdef --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data, want", [
    (minimal(), True),
    ({"nodeProperties": {}}, True),
    ({"name": "job", "nodes": 2, "command": "true"}, False),
    ({"jobDefinitionName": "x", "type": "container", "containerProperties": {}}, False),
    ({}, False),
    (None, False),
    ([], False),
    ("nodeProperties", False),
])
def test_is_batch_jobdef(data: Any, want: bool) -> None:
    assert is_batch_jobdef(data) is want


# --- mapping ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, want", [
    ("tiny", "tiny"),
    ("My_Job-2", "My_Job-2"),
    ("with space", "with-space"),
    ("a/b:c", "a-b-c"),
    ("_leading", "leading"),
    ("--x", "x"),
    ("???", "job"),
    ("", "job"),
    ("x" * 200, "x" * 128),
    ("é", "job"),
    ("a\nb", "a-b"),
])
def test_name_is_sanitised(raw: str, want: str) -> None:
    assert load_batch_jobdef(minimal(jobDefinitionName=raw), "j").name == want


def test_name_from_the_file_when_absent() -> None:
    d = minimal()
    del d["jobDefinitionName"]
    assert load_batch_jobdef(d, "j", default_name="from-file").name == "from-file"
    assert load_batch_jobdef(d, "j", default_name="my jobdef").name == "my-jobdef"
    assert load_batch_jobdef(d, "j").name == "job"


def test_type_may_be_absent() -> None:
    d = minimal()
    del d["type"]
    spec = load_batch_jobdef(d, "j")
    assert spec.nodes == 2 and spec.retry is None


def test_minimal_translation() -> None:
    spec = load_batch_jobdef(minimal(), "j")
    assert spec == spec_from_dict({"name": "tiny", "nodes": 2, "main_node": 0,
                                   "node_ranges": [{"target_nodes": "0:", "command": ["true"]}]})
    assert isinstance(spec, JobSpec) and spec.retry is None and spec.command is None


@pytest.mark.parametrize("sizes, want_mib", [
    ([None, None], None),
    ([64, None], 64),
    ([None, 4096], 4096),
    ([1024, 4096], 4096),
    ([8192, 2048], 8192),
    ([1, 1], 1),
])
def test_shm_size_is_the_largest(sizes: list[int | None], want_mib: int | None) -> None:
    d = minimal()
    d["nodeProperties"]["nodeRangeProperties"] = [
        {"targetNodes": "0", "container": {"command": ["a"]}},
        {"targetNodes": "1", "container": {"command": ["b"]}},
    ]
    for i, size in enumerate(sizes):
        if size is not None:
            d["nodeProperties"]["nodeRangeProperties"][i]["container"]["linuxParameters"] = {
                "sharedMemorySize": size, "devices": []}
    spec = load_batch_jobdef(d, "j")
    assert spec.shm_size == (want_mib * 1024 * 1024 if want_mib else None)


@pytest.mark.parametrize("target, nodes, covered", [
    ("0:", 3, [0, 1, 2]),
    (":2", 3, [0, 1, 2]),
    ("0:2", 3, [0, 1, 2]),
    ("0", 1, [0]),
    (" 0:3 ", 4, [0, 1, 2, 3]),
])
def test_target_nodes(target: str, nodes: int, covered: list[int]) -> None:
    d = minimal()
    d["nodeProperties"]["numNodes"] = nodes
    d["nodeProperties"]["nodeRangeProperties"][0]["targetNodes"] = target
    assert [w.index for w in resolve_nodes(load_batch_jobdef(d, "j"))] == covered


def test_nested_ranges_override() -> None:
    d = minimal()
    d["nodeProperties"]["numNodes"] = 6
    d["nodeProperties"]["nodeRangeProperties"] = [
        {"targetNodes": "0:5", "container": {"command": ["outer"]}},
        {"targetNodes": "2:3", "container": {"command": ["inner"]}},
    ]
    work = resolve_nodes(load_batch_jobdef(d, "j"))
    assert [w.command[0] for w in work] == ["outer"] * 2 + ["inner"] * 2 + ["outer"] * 2


@pytest.mark.parametrize("command, params, override, want", [
    (["echo", "Ref::x"], {"x": "1"}, None, ["echo", "1"]),
    (["echo", "Ref::x"], {"x": "1"}, {"x": "2"}, ["echo", "2"]),
    (["echo", "Ref::x"], None, {"x": "3"}, ["echo", "3"]),
    (["echo", "Ref::missing"], {"x": "1"}, None, ["echo", "Ref::missing"]),
    (["echo", "pre-Ref::x"], {"x": "1"}, None, ["echo", "pre-Ref::x"]),
    (["echo", "Ref::x", "Ref::y"], {"x": "a b", "y": ""}, None, ["echo", "a b", ""]),
    (["Ref::prog"], {"prog": "python3"}, None, ["python3"]),
])
def test_parameter_substitution(command: list[str], params: dict[str, str] | None, override: dict[str, str] | None,
                                want: list[str]) -> None:
    d = with_range(command=command)
    if params is not None:
        d["parameters"] = params
    assert load_batch_jobdef(d, "j", parameters=override).node_ranges[0].command == want


@pytest.mark.parametrize("environment, want", [
    ([], {}),
    ([{"name": "A", "value": "1"}], {"A": "1"}),
    ([{"name": "A", "value": ""}], {"A": ""}),
    ([{"name": "A"}], {"A": ""}),
    ([{"name": "_x", "value": "y"}, {"name": "B2", "value": "z w"}], {"_x": "y", "B2": "z w"}),
])
def test_environment(environment: list[dict[str, str]], want: dict[str, str]) -> None:
    assert load_batch_jobdef(with_range(environment=environment), "j").node_ranges[0].env == want


def test_ignored_keys_are_accepted() -> None:
    d = minimal(
        parameters={"p": "v"}, schedulingPriority=10, containerProperties={"image": "x"}, propagateTags=True,
        tags={"a": "b"}, platformCapabilities=["EC2"], jobDefinitionArn="arn:aws:batch:...:job-definition/tiny:3",
        revision=3, status="ACTIVE", containerOrchestrationType="ECS",
    )
    rng = d["nodeProperties"]["nodeRangeProperties"][0]
    rng["instanceTypes"] = ["p4d.24xlarge"]
    rng["container"].update({
        "image": "img", "vcpus": 4, "memory": 1024, "jobRoleArn": "r", "executionRoleArn": "e", "volumes": [],
        "mountPoints": [], "readonlyRootFilesystem": False, "privileged": True, "user": "nobody",
        "instanceType": "c5n.18xlarge", "resourceRequirements": [{"type": "GPU", "value": "8"}],
        "ulimits": [{"name": "memlock", "softLimit": -1, "hardLimit": -1}], "logConfiguration": {"logDriver": "x"},
        "secrets": [], "networkConfiguration": {}, "ephemeralStorage": {"sizeInGiB": 30},
        "linuxParameters": {"devices": [{"hostPath": "/dev/infiniband/uverbs0"}], "initProcessEnabled": True,
                            "tmpfs": [], "maxSwap": 0, "swappiness": 0},
    })
    assert load_batch_jobdef(d, "j") == load_batch_jobdef(minimal(), "j")


# --- errors -----------------------------------------------------------------------------------------------------

def _range0(key: str) -> str:
    return f"nodeProperties.nodeRangeProperties[0].{key}"


BAD: list[tuple[str, dict[str, Any], str, str]] = [
    # (id, document, field, problem)
    ("unknown top key", minimal(foo=1), "foo", "unknown field"),
    ("wrong type", minimal(type="container"), "type", "must be 'multinode' for a multi-node job, got 'container'"),
    ("no nodeProperties", {"jobDefinitionName": "x", "type": "multinode"}, "nodeProperties",
     "required field is missing (mnp runs multi-node job definitions only)"),
    ("name not a string", minimal(jobDefinitionName=5), "jobDefinitionName", "must be a string, got a number"),
    ("nodeProperties not object", minimal(nodeProperties=[]), "nodeProperties", "must be an object, got an array"),
    ("unknown nodeProperties key", set_path(minimal(), "nodeProperties.extra", 1), "nodeProperties.extra",
     "unknown field"),
    ("no numNodes", del_path(minimal(), "nodeProperties.numNodes"), "nodeProperties.numNodes",
     "required field is missing"),
    ("no mainNode", del_path(minimal(), "nodeProperties.mainNode"), "nodeProperties.mainNode",
     "required field is missing"),
    ("no ranges", del_path(minimal(), "nodeProperties.nodeRangeProperties"), "nodeProperties.nodeRangeProperties",
     "required field is missing"),
    ("numNodes 0", set_path(minimal(), "nodeProperties.numNodes", 0), "nodeProperties.numNodes",
     "must be at least 1, got 0"),
    ("numNodes string", set_path(minimal(), "nodeProperties.numNodes", "2"), "nodeProperties.numNodes",
     "must be an integer, got a string"),
    ("numNodes float", set_path(minimal(), "nodeProperties.numNodes", 2.5), "nodeProperties.numNodes",
     "must be an integer, got 2.5"),
    ("numNodes bool", set_path(minimal(), "nodeProperties.numNodes", True), "nodeProperties.numNodes",
     "must be an integer, got a boolean"),
    ("mainNode negative", set_path(minimal(), "nodeProperties.mainNode", -1), "nodeProperties.mainNode",
     "must be at least 0, got -1"),
    ("mainNode past end", set_path(minimal(), "nodeProperties.mainNode", 2), "nodeProperties.mainNode",
     "is 2, but numNodes is 2 (nodes 0..1)"),
    ("ranges empty", set_path(minimal(), "nodeProperties.nodeRangeProperties", []),
     "nodeProperties.nodeRangeProperties", "must not be empty"),
    ("ranges not array", set_path(minimal(), "nodeProperties.nodeRangeProperties", {}),
     "nodeProperties.nodeRangeProperties", "must be an array, got an object"),
    ("range not object", set_path(minimal(), "nodeProperties.nodeRangeProperties", ["0:"]),
     "nodeProperties.nodeRangeProperties[0]", "must be an object, got a string"),
    ("unknown range key", set_path(minimal(), "nodeProperties.nodeRangeProperties[0].foo", 1), _range0("foo"),
     "unknown field"),
    ("ecsProperties empty", set_path(minimal(), "nodeProperties.nodeRangeProperties[0].ecsProperties", {}),
     _range0("ecsProperties.taskProperties"), "required field is missing"),
    ("container and ecsProperties", set_path(minimal(), "nodeProperties.nodeRangeProperties[0].ecsProperties",
                                             {"taskProperties": [{"containers": [{"name": "a", "command": ["x"]}]}]}),
     _range0("container"), "give 'container' or 'ecsProperties' (several containers), not both"),
    ("eksProperties range", set_path(minimal(), "nodeProperties.nodeRangeProperties[0].eksProperties", {}),
     _range0("eksProperties"), "is not supported by mnp; describe the range with 'container' or 'ecsProperties'"),
    ("no targetNodes", del_path(minimal(), "nodeProperties.nodeRangeProperties[0].targetNodes"),
     _range0("targetNodes"), "required field is missing"),
    ("targetNodes int", set_path(minimal(), "nodeProperties.nodeRangeProperties[0].targetNodes", 0),
     _range0("targetNodes"), "must be a string such as '0:', ':2', '1:3' or '0', got a number"),
    ("targetNodes garbage", set_path(minimal(), "nodeProperties.nodeRangeProperties[0].targetNodes", "a-b"),
     _range0("targetNodes"), "'a-b' is not a node range (use N, N:, :M or N:M)"),
    ("targetNodes backwards", set_path(minimal(), "nodeProperties.nodeRangeProperties[0].targetNodes", "1:0"),
     _range0("targetNodes"), "'1:0' ends before it starts"),
    ("targetNodes past end", set_path(minimal(), "nodeProperties.nodeRangeProperties[0].targetNodes", "0:2"),
     _range0("targetNodes"), "'0:2' names nodes past the last node (1)"),
    ("no container", del_path(minimal(), "nodeProperties.nodeRangeProperties[0].container"), _range0("container"),
     "required field is missing (or give 'ecsProperties')"),
    ("container not object", set_path(minimal(), "nodeProperties.nodeRangeProperties[0].container", "x"),
     _range0("container"), "must be an object, got a string"),
    ("unknown container key", with_range(foo=1), _range0("container.foo"), "unknown field"),
    ("no command", del_path(minimal(), "nodeProperties.nodeRangeProperties[0].container.command"),
     _range0("container.command"),
     "required field is missing: mnp runs the command itself and cannot fall back to the image's CMD"),
    ("command string", with_range(command="echo hi"), _range0("container.command"), "must be an array, got a string"),
    ("command empty", with_range(command=[]), _range0("container.command"), "must not be empty"),
    ("command word", with_range(command=["echo", 3]), _range0("container.command[1]"),
     "must be a string, got a number"),
    ("environment object", with_range(environment={"A": "1"}), _range0("container.environment"),
     "must be an array, got an object"),
    ("environment item", with_range(environment=["A=1"]), _range0("container.environment[0]"),
     "must be an object, got a string"),
    ("environment no name", with_range(environment=[{"value": "1"}]), _range0("container.environment[0].name"),
     "required field is missing"),
    ("environment bad name", with_range(environment=[{"name": "1A", "value": "1"}]),
     _range0("container.environment[0].name"), "'1A' is not a valid environment variable name"),
    ("environment reserved", with_range(environment=[{"name": "A", "value": ""},
                                                      {"name": "AWS_BATCH_JOB_ID", "value": "x"}]),
     _range0("container.environment[1].name"),
     "'AWS_BATCH_JOB_ID': names starting with AWS_BATCH are reserved for Batch"),
    ("environment twice", with_range(environment=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"},
                                                   {"name": "A", "value": "3"}]),
     _range0("container.environment[2].name"),
     "'A' is already set by nodeProperties.nodeRangeProperties[0].container.environment[0]"),
    ("environment value number", with_range(environment=[{"name": "A", "value": 1}]),
     _range0("container.environment[0].value"), "must be a string, got a number"),
    ("environment extra key", with_range(environment=[{"name": "A", "value": "1", "type": "x"}]),
     _range0("container.environment[0].type"), "unknown field"),
    ("linuxParameters not object", with_range(linuxParameters=[]), _range0("container.linuxParameters"),
     "must be an object, got an array"),
    ("linuxParameters unknown", with_range(linuxParameters={"hugepages": 1}),
     _range0("container.linuxParameters.hugepages"), "unknown field"),
    ("sharedMemorySize zero", with_range(linuxParameters={"sharedMemorySize": 0}),
     _range0("container.linuxParameters.sharedMemorySize"), "must be at least 1, got 0"),
    ("sharedMemorySize string", with_range(linuxParameters={"sharedMemorySize": "4096"}),
     _range0("container.linuxParameters.sharedMemorySize"), "must be an integer, got a string"),
    ("parameters not object", minimal(parameters=["a"]), "parameters", "must be an object, got an array"),
    ("parameter value", minimal(parameters={"a": 1}), "parameters.a", "must be a string, got a number"),
    ("timeout not object", minimal(timeout=600), "timeout", "must be an object, got a number"),
    ("timeout unknown key", minimal(timeout={"seconds": 600}), "timeout.seconds", "unknown field"),
    ("timeout too short", minimal(timeout={"attemptDurationSeconds": 59}), "timeout.attemptDurationSeconds",
     "must be at least 60, got 59"),
    ("timeout string", minimal(timeout={"attemptDurationSeconds": "600"}), "timeout.attemptDurationSeconds",
     "must be an integer, got a string"),
    ("retry not object", minimal(retryStrategy=3), "retryStrategy", "must be an object, got a number"),
    ("retry unknown key", minimal(retryStrategy={"attempts": 2, "tries": 2}), "retryStrategy.tries",
     "unknown field"),
    ("attempts 0", minimal(retryStrategy={"attempts": 0}), "retryStrategy.attempts", "must be at least 1, got 0"),
    ("attempts 11", minimal(retryStrategy={"attempts": 11}), "retryStrategy.attempts",
     "must be at most 10, got 11"),
    ("attempts string", minimal(retryStrategy={"attempts": "3"}), "retryStrategy.attempts",
     "must be an integer, got a string"),
    ("rules without attempts", minimal(retryStrategy={"evaluateOnExit": [{"action": "RETRY"}]}),
     "retryStrategy.attempts", "is required when evaluateOnExit is given"),
    ("rules not array", minimal(retryStrategy={"attempts": 2, "evaluateOnExit": {}}),
     "retryStrategy.evaluateOnExit", "must be an array, got an object"),
    ("six rules", minimal(retryStrategy={"attempts": 2, "evaluateOnExit": [{"action": "EXIT"}] * 6}),
     "retryStrategy.evaluateOnExit", "has 6 entries; at most 5 allowed"),
    ("rule not object", minimal(retryStrategy={"attempts": 2, "evaluateOnExit": ["RETRY"]}),
     "retryStrategy.evaluateOnExit[0]", "must be an object, got a string"),
    ("rule no action", minimal(retryStrategy={"attempts": 2, "evaluateOnExit": [{"onExitCode": "1"}]}),
     "retryStrategy.evaluateOnExit[0].action", "required field is missing"),
    ("rule bad action", minimal(retryStrategy={"attempts": 2, "evaluateOnExit": [{"action": "EXIT"},
                                                                                 {"action": "again"}]}),
     "retryStrategy.evaluateOnExit[1].action", "must be RETRY or EXIT, got 'again'"),
    ("rule action number", minimal(retryStrategy={"attempts": 2, "evaluateOnExit": [{"action": 1}]}),
     "retryStrategy.evaluateOnExit[0].action", "must be a string, got a number"),
    ("rule unknown key", minimal(retryStrategy={"attempts": 2, "evaluateOnExit": [{"action": "EXIT", "on": "x"}]}),
     "retryStrategy.evaluateOnExit[0].on", "unknown field"),
    ("exit code letters", minimal(retryStrategy={"attempts": 2, "evaluateOnExit": [{"action": "EXIT",
                                                                                    "onExitCode": "1a"}]}),
     "retryStrategy.evaluateOnExit[0].onExitCode", "'1a' may hold only digits, optionally ending in '*'"),
    ("exit code inner star", minimal(retryStrategy={"attempts": 2, "evaluateOnExit": [{"action": "EXIT",
                                                                                       "onExitCode": "1*2"}]}),
     "retryStrategy.evaluateOnExit[0].onExitCode", "'1*2' may hold only digits, optionally ending in '*'"),
    ("exit code number", minimal(retryStrategy={"attempts": 2, "evaluateOnExit": [{"action": "EXIT",
                                                                                   "onExitCode": 1}]}),
     "retryStrategy.evaluateOnExit[0].onExitCode", "must be a string, got a number"),
    ("exit code empty", minimal(retryStrategy={"attempts": 2, "evaluateOnExit": [{"action": "EXIT",
                                                                                  "onExitCode": ""}]}),
     "retryStrategy.evaluateOnExit[0].onExitCode", "must not be empty (leave it out to match anything)"),
    ("reason punctuation", minimal(retryStrategy={"attempts": 2, "evaluateOnExit": [{"action": "EXIT",
                                                                                     "onReason": "Out-of-memory"}]}),
     "retryStrategy.evaluateOnExit[0].onReason",
     "'Out-of-memory' may hold only letters, digits, '.', ':' and white space, optionally ending in '*'"),
    ("status reason long", minimal(retryStrategy={"attempts": 2, "evaluateOnExit": [{"action": "EXIT",
                                                                                     "onStatusReason": "a" * 513}]}),
     "retryStrategy.evaluateOnExit[0].onStatusReason", "is 513 characters long; Batch allows at most 512"),
]


@pytest.mark.parametrize("doc, field, problem", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_errors_name_the_batch_field(doc: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(SpecError) as e:
        load_batch_jobdef(doc, "jobdef.json")
    assert (e.value.field, e.value.problem) == (field, problem)
    assert e.value.source == "jobdef.json"
    assert str(e.value) == f"jobdef.json: {field}: {problem}"
    assert "\n" not in str(e.value)
    assert e.value.exit_code == 2


NUL = "a\0b"


@pytest.mark.parametrize("doc, field", [
    (with_range(command=["echo", NUL]), _range0("container.command[1]")),
    (with_range(command=["Ref::x"]) | {"parameters": {"x": NUL}}, "parameters.x"),
    (with_range(environment=[{"name": "A", "value": NUL}]), _range0("container.environment[0].value")),
], ids=["command", "parameter", "environment"])
def test_nul_bytes_are_refused(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as e:
        load_batch_jobdef(doc, "j")
    assert (e.value.field, e.value.problem) == (field, "must not contain a NUL byte")


def test_mnp_limits_are_reported_under_the_batch_field() -> None:
    """Checks mnp makes on the translated job (here its node limit) name the Batch field they came from."""
    with pytest.raises(SpecError) as e:
        load_batch_jobdef(set_path(minimal(), "nodeProperties.numNodes", 1001), "jobdef.json")
    assert e.value.field == "nodeProperties.numNodes"
    assert "1000" in e.value.problem
    assert str(e.value).startswith("jobdef.json: nodeProperties.numNodes: ")


def test_not_an_object() -> None:
    with pytest.raises(SpecError) as e:
        load_batch_jobdef([], "j")  # type: ignore[arg-type]
    assert str(e.value) == "j: must be an object, got an array"


def _ranges(*spans: tuple[str, str], nodes: int = 4) -> dict[str, Any]:
    d = minimal()
    d["nodeProperties"]["numNodes"] = nodes
    d["nodeProperties"]["nodeRangeProperties"] = [
        {"targetNodes": t, "container": {"command": [c]}} for t, c in spans]
    return d


@pytest.mark.parametrize("doc, field, problem", [
    (_ranges(("0:1", "a")), "nodeProperties.nodeRangeProperties", "node(s) 2-3 are not covered by any range"),
    (_ranges(("0:2", "a"), ("1:3", "b")), "nodeProperties.nodeRangeProperties[1].targetNodes",
     "1:3 overlaps nodeRangeProperties[0] (0:2) without being nested in it"),
    (_ranges(("0:", "a"), (":3", "b")), "nodeProperties.nodeRangeProperties[1].targetNodes",
     "names the same nodes as nodeRangeProperties[0]"),
], ids=["gap", "overlap", "same"])
def test_range_layout_errors_use_batch_names(doc: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(SpecError) as e:
        load_batch_jobdef(doc, "j")
    assert (e.value.field, e.value.problem) == (field, problem)


def test_case_insensitive_actions() -> None:
    d = minimal(retryStrategy={"attempts": 2, "evaluateOnExit": [
        {"action": "retry", "onExitCode": "1"}, {"action": "Exit", "onExitCode": "2"}]})
    retry = load_batch_jobdef(d, "j").retry
    assert retry is not None
    assert [r.action for r in retry.rules] == ["RETRY", "EXIT"]


@pytest.mark.parametrize("raw, want", [
    ({}, RetryStrategy(1, ())),
    ({"attempts": 1}, RetryStrategy(1, ())),
    ({"attempts": 10}, RetryStrategy(10, ())),
    ({"attempts": 2, "evaluateOnExit": []}, RetryStrategy(2, ())),
    ({"attempts": 4, "evaluateOnExit": [{"action": "EXIT", "onExitCode": "3", "onReason": "OOM*",
                                          "onStatusReason": "Essential container*"}]},
     RetryStrategy(4, (RetryRule("EXIT", "3", "OOM*", "Essential container*"),))),
])
def test_retry_strategy_parsing(raw: dict[str, Any], want: RetryStrategy) -> None:
    assert load_batch_jobdef(minimal(retryStrategy=raw), "j").retry == want


def test_should_retry_from_parsed_json() -> None:
    retry = load_batch_jobdef(example(), "j").retry
    assert retry is not None
    attempts = 0
    while True:
        attempts += 1
        if not retry.should_retry(137, "", attempts):
            break
    assert attempts == 3


