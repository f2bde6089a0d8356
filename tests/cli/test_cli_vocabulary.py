"""One vocabulary: each command's JSON has exactly the keys README's "JSON output" table lists (real commands,
real local nodes), and every command's --help has help for every option and an example."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import ROOT, run_mnp

from mnp.cli.main import cli


def documented() -> dict[str, tuple[set[str], set[str]]]:
    """README's JSON table: first command of each row -> (top-level keys, keys of each ``nodes`` entry)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### JSON output", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = line.split(" | ")
        if not line.startswith("| `mnp ") or len(cells) != 2:
            continue
        command = re.findall(r"`([^`]+)`", cells[0])[0]
        top = re.sub(r"\([^)]*\)", "", cells[1])  # what a (parenthesis) says is about the key before it
        nested = re.search(r"`nodes` \(each ([^)]*)\)", cells[1])
        rows[command] = (set(re.findall(r"`(\w+)`", top)), set(re.findall(r"`(\w+)`", nested.group(1)))
                         if nested else set())
    return rows


def test_the_table_is_there() -> None:
    assert set(documented()) == {"mnp launch --json", "mnp launch --dry-run --json", "mnp status --json",
                                 "mnp list --json", "mnp doctor --json"}


@pytest.mark.namespaces
def test_each_commands_json_has_the_documented_keys(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    docs = documented()
    p = run_mnp(["run", "-N", "2", "--json", sys.executable, "-c", "pass"], mnp_home)
    assert p.returncode == 0, p.stderr
    launched = json.loads(p.stdout)
    job = tmp_path / "j.yaml"
    job.write_text(f"command: [{sys.executable}, -c, pass]\nnodes: 2\nranks_per_node: 1\n")
    launched_file = json.loads(run_mnp(["launch", "--json", str(job)], mnp_home).stdout)
    dry = json.loads(run_mnp(["run", "-N", "2", "--dry-run", "--json", "true"], mnp_home).stdout)
    status = json.loads(run_mnp(["status", "--json", launched["job_id"]], mnp_home).stdout)
    listed = json.loads(run_mnp(["list", "--json"], mnp_home).stdout)
    doctor = run_mnp(["doctor", "--nodes", "2", "--json"], mnp_home)
    assert doctor.returncode in (0, 1), doctor.stderr
    doc = json.loads(doctor.stdout)
    for name, obj in (("mnp launch --json", launched), ("mnp launch --json", launched_file),
                      ("mnp launch --dry-run --json", dry), ("mnp status --json", status),
                      ("mnp list --json", listed[0]), ("mnp doctor --json", doc)):
        top, per_node = docs[name]
        assert set(obj) == top, (name, set(obj) ^ top)
        if per_node:
            assert obj["nodes"] and all(set(n) == per_node for n in obj["nodes"]), (name, obj["nodes"])
    assert status["job_id"] == launched["job_id"] == listed[1]["job_id"]
    assert doc["job_id"] and "id" not in status


def _commands() -> list[str]:
    ctx = click.Context(cli)
    return [name for name in cli.list_commands(ctx) if not cli.get_command(ctx, name).hidden]  # type: ignore[union-attr]


@pytest.mark.noroot
@pytest.mark.parametrize("name", _commands())
def test_every_option_has_help(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    missing = [p.name for p in command.params if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert not missing, f"mnp {name}: options without help: {missing}"


@pytest.mark.noroot
@pytest.mark.parametrize("name", _commands())
def test_every_command_shows_an_example(name: str, tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, [name, "--help"], prog_name="mnp", env={"MNP_HOME": str(tmp_path)})
    assert r.exit_code == 0, r.output
    assert re.search(r"^  Examples?.*:$", r.output, re.MULTILINE), r.output
    assert re.search(rf"^\s+mnp {name} \S", r.output, re.MULTILINE), r.output  # not re-wrapped: \b kept it
    top = CliRunner().invoke(cli, ["--help"], prog_name="mnp")
    assert not [ln for ln in top.output.split("Commands:")[1].splitlines() if ln.endswith("...")]  # none cut short
