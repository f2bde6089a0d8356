"""The mpirun back-end for real: Open MPI 5 (PyPI wheel), Open MPI 4 (Debian), MPICH's Hydra, with their daemons
started through mnp's control plane on isolated local nodes; C programs built with each MPI's mpicc."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import JOBS, ROOT, run_mnp, write_job

from mnp.errors import LaunchError
from mnp.launch.detect import detect_mpi, library_family
from mnp.launch.mpirun import launcher_hosts, mpirun_command
from mnp.node.rsh import parse_args
from mnp.plan import JobPlan, NodePlan

OMPI_PY = ROOT / ".venv-ompi" / "bin" / "python"
MPICH_CC = Path(sys.executable).parent / "mpicc"
OMPI_CC = ROOT / ".venv-ompi" / "bin" / "mpicc"
DEBIAN_CC = Path("/usr/bin/mpicc")
needs_ompi = pytest.mark.skipif(not OMPI_PY.exists(), reason=".venv-ompi (Open MPI wheel) not set up: ./setup.sh")


@pytest.mark.parametrize("argv,host,command", [
    (["node1", "prted", "--x", "1"], "node1", "prted --x 1"),
    (["-x", "10.0.0.2", "/p/hydra_pmi_proxy", "--control-port", "h:1"], "10.0.0.2",
     "/p/hydra_pmi_proxy --control-port h:1"),
    (["-o", "BatchMode=yes", "-p", "22", "root@n3", "orted"], "n3", "orted"),
])
def test_rsh_arguments_like_ssh(argv: list[str], host: str, command: str) -> None:
    assert parse_args(argv) == (host, command)


@needs_ompi
def test_detect_mpi_from_python_environment() -> None:
    assert detect_mpi([str(OMPI_PY)]).family == "openmpi"
    assert detect_mpi([sys.executable]).family == "mpich"
    assert detect_mpi(["/no/such/program"]).family == "mpich"


IMPI_PY = ROOT / ".venv-impi" / "bin" / "python"


@pytest.mark.skipif(not IMPI_PY.exists(), reason=".venv-impi (impi-rt wheel) not set up: see setup.sh")
def test_detect_intel_mpi_apart_from_mpich() -> None:
    """Both install lib/libmpi.so.12; only Intel's carries its name."""
    found = detect_mpi([str(IMPI_PY)])
    assert found.family == "impi" and found.prefix == ROOT / ".venv-impi" and "Intel MPI" in found.why
    assert library_family(ROOT / ".venv-impi" / "lib" / "libmpi.so.12") == "impi"
    assert library_family(Path(sys.executable).parent.parent / "lib" / "libmpi.so.12") == "mpich"


def test_library_family_of_odd_files(tmp_path: Path) -> None:
    (tmp_path / "libmpi.so.12").write_bytes(b"")  # empty: cannot be mapped, so not Intel
    assert library_family(tmp_path / "libmpi.so.12") == "mpich"
    (tmp_path / "libmpi.so.40").write_bytes(b"Intel(R) MPI Library")  # .so.40 is Open MPI's ABI whatever it says
    assert library_family(tmp_path / "libmpi.so.40") == "openmpi"
    assert library_family(tmp_path / "libfoo.so.1") is None


def _plan(addresses: list[str], ranks: list[int]) -> JobPlan:
    nodes, first = [], 0
    for i, (a, n) in enumerate(zip(addresses, ranks)):
        nodes.append(NodePlan(i, f"node{i}", a, ["true"], {}, list(range(first, first + n))))
        first += n
    return JobPlan("j", "k", 0, nodes, "")


def test_nodes_sharing_loopback_get_their_own_addresses() -> None:
    """--no-isolate: every node is 127.0.0.1; Open MPI refused the hostfile naming it twice (exit 250)."""
    plan = _plan(["127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.1"], [2, 1, 1, 3])
    assert launcher_hosts(plan) == [("127.0.0.1", 2, 0), ("127.0.0.3", 1, 1), ("127.0.0.2", 1, 2),
                                    ("127.0.0.4", 3, 3)]
    lc = mpirun_command("openmpi", plan)
    assert lc.files["hostfile"] == "127.0.0.1 slots=2\n127.0.0.3 slots=1\n127.0.0.2 slots=1\n127.0.0.4 slots=3\n"
    assert lc.hosts == {"127.0.0.1": 0, "127.0.0.3": 1, "127.0.0.2": 2, "127.0.0.4": 3}
    lc = mpirun_command("mpich", _plan(["127.0.0.1", "127.0.0.1"], [2, 2]))
    assert lc.files["hostfile"] == "127.0.0.1:2\n127.0.0.2:2\n" and lc.hosts == {"127.0.0.1": 0, "127.0.0.2": 1}
    distinct = _plan(["10.0.0.1", "10.0.0.2"], [1, 1])
    assert mpirun_command("openmpi", distinct).files["hostfile"] == "10.0.0.1 slots=1\n10.0.0.2 slots=1\n"
    with pytest.raises(LaunchError, match="nodes share the address 10.0.0.1"):
        launcher_hosts(_plan(["10.0.0.1", "10.0.0.1"], [1, 1]))


@pytest.mark.skipif(not Path("/usr/bin/mpirun").exists() or not OMPI_PY.exists(),
                    reason="Debian's Open MPI 4 and .venv-ompi's mpi4py")
def test_open_mpi_takes_the_loopback_hostfile(tmp_path: Path) -> None:
    """Open MPI 4 runs the hostfile mnp writes for two nodes on 127.0.0.1: one rank forked, one under a daemon
    started through the remote shell (a stand-in for mnp-rsh that runs the command here)."""
    hostfile = tmp_path / "hostfile"
    hostfile.write_text(mpirun_command("openmpi", _plan(["127.0.0.1", "127.0.0.1"], [1, 1])).files["hostfile"])
    rsh = tmp_path / "rsh"
    rsh.write_text('#!/bin/sh\necho "rsh $1" >>"$0.log"; shift; exec /bin/sh -c "$*"\n')
    rsh.chmod(0o755)
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "MPI4PY_LIBMPI": "/usr/lib/x86_64-linux-gnu/libmpi.so.40", "OMPI_MCA_btl_tcp_if_include": "lo",
           "OMPI_MCA_oob_tcp_if_include": "lo"}
    r = subprocess.run(["/usr/bin/mpirun", "--hostfile", str(hostfile), "-np", "2", "--map-by", "slot", "-x",
                        "MPI4PY_LIBMPI", "--mca", "plm_rsh_agent", str(rsh), "--mca", "plm_rsh_no_tree_spawn", "1",
                        str(OMPI_PY), "-c", "from mpi4py import MPI; c = MPI.COMM_WORLD; "
                        "print('SUM', c.rank, c.allreduce(1), flush=True)"],
                       capture_output=True, text=True, timeout=120, env=env, check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert sorted(ln for ln in r.stdout.splitlines() if ln.startswith("SUM")) == ["SUM 0 2", "SUM 1 2"]
    assert (tmp_path / "rsh.log").read_text().split() == ["rsh", "127.0.0.2"]  # node 1 only: node 0 is forked


def _envs(out: str) -> list[dict]:
    return [json.loads(ln.split("ENV ", 1)[1]) | {"prefix": ln.split("ENV", 1)[0].strip()}
            for ln in out.splitlines() if "ENV {" in ln]


@needs_ompi
@pytest.mark.namespaces
def test_open_mpi_wheel_mpi4py_across_nodes(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "ompi.yaml", nodes=3, ranks_per_node=2, transport="tcp",
                    command=[str(OMPI_PY), str(JOBS / "envdump.py")])
    p = run_mnp(["launch", "--json", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr
    recs = _envs(p.stderr)
    assert sorted(r["rank"] for r in recs) == list(range(6)) and {r["size"] for r in recs} == {6}
    assert len({r["host"] for r in recs}) == 3
    for r in recs:
        node = int(r["env"]["MNP_NODE_INDEX"])
        assert r["rank"] // 2 == node and r["prefix"] == f"[node {node} rank {r['rank']}]"
        assert r["env"]["MNP_LOCAL_RANK"] == str(r["rank"] % 2)
        assert r["env"]["AWS_BATCH_JOB_NODE_INDEX"] == str(node)
    st = json.loads(run_mnp(["status", "--json", json.loads(p.stdout)["job_id"]], mnp_home).stdout)
    assert st["info"]["mpi"]["family"] == "openmpi" and st["info"]["mpi"]["launcher"] == "mpirun"


@needs_ompi
@pytest.mark.namespaces
def test_open_mpi_failing_rank_exit_code(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "f.yaml", nodes=2, ranks_per_node=2, command=[str(OMPI_PY), str(JOBS / "fail_rank.py")],
                    env={"FAIL_RANK": 3, "FAIL_CODE": 6})
    p = run_mnp(["launch", "--grace", "1", str(job)], mnp_home)
    assert p.returncode == 6, p.stderr
    assert "mpirun" in p.stderr.strip().splitlines()[-1]


def test_open_mpi_cannot_use_pmi(tmp_path: Path, mnp_home: Path) -> None:
    job = write_job(tmp_path / "x.yaml", mpi="openmpi", launcher="pmi", command="true")
    p = run_mnp(["launch", str(job)], mnp_home)
    assert p.returncode == 2 and "launcher: Open MPI cannot be started by PMI-1" in p.stderr


@pytest.mark.namespaces
def test_hydra_mpiexec_selectable(tmp_path: Path, mnp_home: Path, no_leftovers: None) -> None:
    job = write_job(tmp_path / "h.yaml", nodes=2, ranks_per_node=2, launcher="mpirun", transport="tcp",
                    command=[sys.executable, str(JOBS / "envdump.py")])
    p = run_mnp(["launch", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr
    recs = _envs(p.stdout)
    assert sorted(r["rank"] for r in recs) == [0, 1, 2, 3]
    assert {r["env"]["MNP_NODE_INDEX"] for r in recs if r["rank"] >= 2} == {"1"}  # each node keeps its env


def _build(cc: Path, tmp: Path, name: str) -> Path:
    out = tmp / name
    subprocess.run([str(cc), "-O2", "-o", str(out), str(ROOT / "bench" / "c" / "hello.c")], check=True)
    return out


COMPILERS = [("mpich", MPICH_CC, "MPICH"), ("openmpi5", OMPI_CC, "Open MPI v5"), ("openmpi4", DEBIAN_CC, "Open MPI v4")]


@pytest.mark.namespaces
@pytest.mark.parametrize("name,cc,lib", COMPILERS, ids=[c[0] for c in COMPILERS])
def test_c_program_built_with_each_mpicc(tmp_path: Path, mnp_home: Path, no_leftovers: None, name: str, cc: Path,
                                         lib: str) -> None:
    if not cc.exists():
        pytest.skip(f"{cc} not installed (./setup.sh installs it)")
    exe = _build(cc, tmp_path, f"hello-{name}")
    job = write_job(tmp_path / "c.yaml", nodes=2, ranks_per_node=2, transport="tcp", command=[str(exe)])
    p = run_mnp(["launch", str(job)], mnp_home)
    assert p.returncode == 0, p.stderr + p.stdout
    lines = [ln for ln in p.stdout.splitlines() if "C-HELLO" in ln]
    assert len(lines) == 4 and all("size=4 sum=4" in ln for ln in lines)
    assert all(lib in ln for ln in lines), lines
    assert {ln.split("node=")[1].split()[0] for ln in lines} == {"0", "1"}
    assert shutil.which("ldd")


@pytest.mark.noroot
@pytest.mark.skipif(not (ROOT / ".venv-ompi" / "bin" / "mpirun").exists(), reason=".venv-ompi's Open MPI 5")
def test_open_mpi_5_refuses_nodes_sharing_an_address() -> None:
    """Open MPI 5's btl/tcp never pairs a peer with an address this host holds, so two --no-isolate nodes (both
    127.0.0.1) hang at their first message: refused before anything starts. Open MPI 4 and distinct addresses
    are not."""
    from mnp.errors import UsageError

    prefix = ROOT / ".venv-ompi"
    with pytest.raises(UsageError, match="Open MPI 5 cannot connect ranks of different nodes that share one IP"):
        mpirun_command("openmpi", _plan(["127.0.0.1", "127.0.0.1"], [1, 1]), prefix)
    assert mpirun_command("openmpi", _plan(["10.0.0.1", "10.0.0.2"], [1, 1]), prefix).hosts == {
        "10.0.0.1": 0, "10.0.0.2": 1}
    assert mpirun_command("openmpi", _plan(["127.0.0.1"], [2]), prefix).files["hostfile"] == "127.0.0.1 slots=2\n"


@pytest.mark.skipif(not OMPI_PY.exists(), reason=".venv-ompi's mpi4py")
def test_open_mpi_5_no_isolate_two_nodes_is_one_line_exit_2(tmp_path: Path, mnp_home: Path,
                                                            no_leftovers: None) -> None:
    """Before: a 2-node --no-isolate Open MPI 5 pingpong hung until killed ("Socket closed")."""
    job = write_job(tmp_path / "pp.yaml", ranks_per_node=1, command=[str(OMPI_PY), str(JOBS / "pingpong.py")])
    p = run_mnp(["launch", "-N", "2", "--no-isolate", str(job)], mnp_home, timeout=60)
    assert p.returncode == 2, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("mnp: error:")]
    assert len(errors) == 1 and "Open MPI 5 cannot connect ranks" in errors[0], p.stderr
    assert "Traceback" not in p.stderr
    st = json.loads(run_mnp(["status", "--json", "pp"], mnp_home).stdout)
    assert st["state"] == "FAILED" and "share one IP address" in st["reason"]
    one = run_mnp(["launch", "-N", "1", "-n", "2", "--no-isolate", str(job)], mnp_home, timeout=120)
    assert one.returncode == 0 and "LATENCY_US" in one.stdout, one.stderr
