"""The SSH path against real OpenSSH servers on isolated test hosts, including every failure users hit."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import JOBS, ROOT, run_mnp, write_job
from sshnodes import SshNodes

pytestmark = pytest.mark.namespaces


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshNodes]:
    # node 2: nothing listening; node 3: accepts connections and never answers (a hung sshd)
    nodes = SshNodes(4, tmp_path_factory.mktemp("ssh"), up=[0, 1], silent=[3]).start()
    try:
        yield nodes
    finally:
        nodes.stop()


def _job(tmp: Path, **kw: object) -> Path:
    fields = {"name": "sshjob", "command": [sys.executable, str(JOBS / "envdump.py")], "transport": "tcp", **kw}
    return write_job(tmp / "job.yaml", **fields)


def _launch(hosts: SshNodes, tmp: Path, mnp_home: Path, extra: list[str], job: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_mnp(["launch", *hosts.ssh_args(), *extra, str(job or _job(tmp))], mnp_home, timeout=120, env=env)


def test_hostfile_mpich_format_runs_job(hosts: SshNodes, tmp_path: Path, mnp_home: Path) -> None:
    hf = tmp_path / "hosts"
    hf.write_text(f"# two test hosts\n{hosts.addresses[0]}:2\n{hosts.addresses[1]}:1\n")
    p = _launch(hosts, tmp_path, mnp_home, ["--hostfile", str(hf), "--json"])
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert [n["hostname"] for n in res["nodes"]] == ["node0", "node1"]
    assert [n["address"] for n in res["nodes"]] == hosts.addresses[:2]
    recs = [json.loads(line.split("ENV ", 1)[1]) for line in p.stderr.splitlines() if "ENV {" in line]
    assert sorted(r["rank"] for r in recs) == [0, 1, 2]  # slots: 2 + 1
    assert {r["host"] for r in recs if r["rank"] < 2} == {"node0"} and recs[0]["size"] == 3


def test_hosts_option_and_ssh_config_names_and_job_ranks_win(hosts: SshNodes, tmp_path: Path,
                                                            mnp_home: Path) -> None:
    # node0/node1 resolve only through the ssh_config given (HostName lines): ~/.ssh/config is honoured
    p = _launch(hosts, tmp_path, mnp_home, ["--hosts", "node0:4,node1:4"], job=_job(tmp_path, ranks_per_node=1))
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("ENV {") == 2  # the job's ranks_per_node wins over the slots


def test_failing_rank_exit_code_over_ssh(hosts: SshNodes, tmp_path: Path, mnp_home: Path) -> None:
    job = _job(tmp_path, command=[sys.executable, str(JOBS / "fail_rank.py")], env={"FAIL_RANK": 1, "FAIL_CODE": 9},
               ranks_per_node=1)
    p = _launch(hosts, tmp_path, mnp_home, ["--hosts", f"{hosts.addresses[0]},{hosts.addresses[1]}", "--grace", "1"],
                job=job)
    assert p.returncode == 9, p.stderr
    assert "node 1 rank 1 exited with code 9" in p.stderr


def test_slurm_allocation_is_used_over_ssh_when_asked(hosts: SshNodes, tmp_path: Path, mnp_home: Path) -> None:
    """--via ssh: the allocation's nodes (from its variables), reached over SSH (srun is the default: test_slurm)."""
    env = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "node[0-1]", "SLURM_NTASKS_PER_NODE": "2",
           "SLURM_JOB_NUM_NODES": "2"}
    p = _launch(hosts, tmp_path, mnp_home, ["--via", "ssh"], env=env)
    assert p.returncode == 0, p.stderr
    assert "Slurm allocation's 2 node(s)" in p.stderr
    assert p.stdout.count("ENV {") == 4


FAILURES = [
    # (what, extra args builder, expected message)
    ("refused", lambda h, t: ["--hosts", f"{h.addresses[0]},{h.addresses[2]}"], "connection refused on port 22"),
    ("unreachable", lambda h, t: ["--hosts", h.addresses[0].rsplit(".", 1)[0] + ".250", "--connect-timeout", "1"],
     "unreachable"),
    ("unknown name", lambda h, t: ["--hosts", "no-such-host.invalid"], "unknown host name"),
    ("auth", lambda h, t: ["--hosts", h.addresses[0], "--ssh-key", _other_key(t)], "authentication failed"),
    ("unknown key", lambda h, t: ["--hosts", h.addresses[0], "--known-hosts", _empty(t)], "unknown host key"),
    ("changed key", lambda h, t: ["--hosts", h.addresses[0], "--known-hosts", _wrong_known(h, t)],
     "host key CHANGED"),
    ("no mnp", lambda h, t: ["--hosts", h.addresses[0], "--remote-python", "/usr/bin/python3.11"],
     "mnp is not installed"),
    ("no python", lambda h, t: ["--hosts", h.addresses[0], "--remote-python", "/opt/none/python3"],
     "Python not found at /opt/none/python3"),
    ("no mpi", lambda h, t: ["--hosts", h.addresses[0], "--remote-python", _python_without_mpi(t)],
     "MPI not usable"),
    ("broken agent", lambda h, t: ["--hosts", h.addresses[0], "--remote-python", _python_with_broken_zmq(t)],
     "mnp's agent cannot start with"),
]


def _other_key(tmp: Path) -> str:
    from sshnodes import keygen

    keygen(tmp / "other")
    return str(tmp / "other")


def _empty(tmp: Path) -> str:
    (tmp / "empty_known").write_text("")
    return str(tmp / "empty_known")


def _wrong_known(h: SshNodes, tmp: Path) -> str:
    (tmp / "wrong_known").write_text(f"{h.addresses[0]} {h.host_pubs[1]}\n")  # node1's key for node0
    return str(tmp / "wrong_known")


def _python_without_mpi(tmp: Path) -> str:
    """A real Python 3.11 where mnp imports but mpi4py does not exist."""
    venv = tmp / "venv-nompi"
    subprocess.run(["/usr/bin/python3.11", "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    (site / "mnp-src.pth").write_text(str(ROOT) + "\n")
    return str(venv / "bin" / "python")


def _python_with_broken_zmq(tmp: Path) -> str:
    """A real Python 3.11 where mnp and MPI import, but one of the agent's dependencies (pyzmq) does not."""
    venv = tmp / "venv-nozmq"
    subprocess.run(["/usr/bin/python3.11", "-m", "venv", "--without-pip", str(venv)], check=True)
    (venv / "broken" / "zmq").mkdir(parents=True)
    (venv / "broken" / "zmq" / "__init__.py").write_text("raise ImportError('this pyzmq is broken')\n")
    site = next((venv / "lib").glob("python3.*/site-packages"))
    ours = next((Path(sys.prefix) / "lib").glob("python3.*/site-packages"))
    (site / "mnp-src.pth").write_text(f"{venv / 'broken'}\n{ROOT}\n{ours}\n")  # the broken zmq first
    return str(venv / "bin" / "python")


@pytest.mark.parametrize("what,args,message", FAILURES, ids=[f[0] for f in FAILURES])
def test_each_failure_is_named_per_host(hosts: SshNodes, tmp_path: Path, mnp_home: Path, what: str, args,  # type: ignore[no-untyped-def]
                                        message: str) -> None:
    if what in ("no mnp", "no mpi", "broken agent") and not Path("/usr/bin/python3.11").exists():
        pytest.skip("needs Debian's python3.11")
    extra = args(hosts, tmp_path)
    p = _launch(hosts, tmp_path, mnp_home, extra)
    assert p.returncode == 1, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert message in last, p.stderr
    host = extra[1].split(",")[-1] if what == "refused" else extra[1]
    assert f"mnp: error: {host}: " in last
    assert "Traceback" not in p.stderr


def test_silent_sshd_is_one_line_within_the_connect_timeout(hosts: SshNodes, tmp_path: Path,
                                                             mnp_home: Path) -> None:
    """A host whose port 22 accepts but never answers: one line naming it, about when the connect timeout runs out
    (not twice that), no paramiko traceback, and no progress line claiming every host is ready."""
    import time

    silent = hosts.addresses[3]
    t0 = time.monotonic()
    p = _launch(hosts, tmp_path, mnp_home, ["--hosts", f"{hosts.addresses[0]},{silent}", "--connect-timeout", "4"])
    took = time.monotonic() - t0
    assert p.returncode == 1, p.stderr
    *progress, last = p.stderr.strip().splitlines()
    assert last == (f"mnp: error: {silent}: port 22 accepted the connection but no SSH server answered within 4s "
                    "(sshd hung or overloaded, or another service on that port)"), p.stderr
    progress = [line for line in progress if not line.startswith("mnp: job ")]  # the job's id line comes first
    assert all(line in ("mnp: hosts ready 0/2", "mnp: hosts ready 1/2") for line in progress), p.stderr
    assert took < 4 + 3.5, took  # CLI start-up and the good host's preflight included; 2x the timeout is 8


def test_python_version_mismatch(hosts: SshNodes, tmp_path: Path, mnp_home: Path) -> None:
    other = next(iter(sorted(Path("/root/.pyenv/versions").glob("3.12*/bin/python3.12"))), None) \
        if Path("/root/.pyenv/versions").exists() else None
    if other is None:
        pytest.skip("no second Python version on this machine")
    p = _launch(hosts, tmp_path, mnp_home, ["--hosts", hosts.addresses[0], "--remote-python", str(other)])
    assert p.returncode == 1
    assert "Python version mismatch: 3.12" in p.stderr and "3.11 here" in p.stderr


def test_insecure_option_skips_host_key_check(hosts: SshNodes, tmp_path: Path, mnp_home: Path) -> None:
    p = _launch(hosts, tmp_path, mnp_home, ["--hosts", hosts.addresses[0], "--known-hosts", _empty(tmp_path),
                                             "--insecure-no-host-key-check"], job=_job(tmp_path, ranks_per_node=1))
    assert p.returncode == 0, p.stderr


def _mnp_processes(hosts: SshNodes, node: int) -> list[str]:
    found = []
    for pid in hosts.pids(node):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "mnp" in cmd:
            found.append(f"{pid}: {cmd[:80]}")
    return found


def test_job_refused_after_the_hosts_were_reached_leaves_nothing(hosts: SshNodes, tmp_path: Path,
                                                                 mnp_home: Path) -> None:
    """mnp launch starts reaching SSH hosts (their agents start and wait) while it loads and checks the job; a job
    refused then (``mpi: openmpi`` for a program that uses MPICH: exit 2) must still end every agent it started."""
    import time

    job = _job(tmp_path, mpi="openmpi")
    p = _launch(hosts, tmp_path, mnp_home, ["--hosts", f"{hosts.addresses[0]},{hosts.addresses[1]}"], job=job)
    assert p.returncode == 2, p.stderr
    assert "mpi: openmpi, but the program uses" in p.stderr.strip().splitlines()[-1], p.stderr
    assert "Traceback" not in p.stderr
    deadline = time.monotonic() + 15
    while (left := _mnp_processes(hosts, 0) + _mnp_processes(hosts, 1)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], left
