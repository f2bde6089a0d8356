"""paramiko is imported without invoke where mnp cannot need it, and invoke stays importable afterwards."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.noroot
pytest.importorskip("invoke")  # (paramiko 4 depends on it; where it is absent there is nothing to skip)

PROBE = """
import sys
from mnp.cluster.sshdial import _import_paramiko
paramiko = _import_paramiko()
import paramiko.config as c
print("invoke loaded:", "invoke" in sys.modules, "config has invoke:", c.invoke is not None)
import invoke  # anyone may still import it
print("invoke importable:", invoke.__name__ == "invoke")
"""


def _probe(env_path: str | None = None) -> str:
    env = None
    if env_path is not None:
        import os

        env = {**os.environ, "PATH": env_path}
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=env).stdout


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the ssh client (then paramiko's parser is not used)")
def test_without_invoke_when_ssh_reads_the_config() -> None:
    out = _probe()
    assert "invoke loaded: False config has invoke: False" in out
    assert "invoke importable: True" in out


def test_with_invoke_when_paramiko_parses_the_config(tmp_path: Path) -> None:
    """No ssh client on PATH: paramiko's parser is mnp's, and its Match exec needs invoke."""
    out = _probe(env_path=str(tmp_path))
    assert "config has invoke: True" in out
