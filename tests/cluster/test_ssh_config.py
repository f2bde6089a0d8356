"""ssh_config as OpenSSH reads it, against real sshd test hosts: Include, Match host, HostName, User, Port,
IdentityFile, UserKnownHostsFile, StrictHostKeyChecking (yes, accept-new, no), ProxyJump, ProxyCommand and
ConnectTimeout. No --ssh-key, --known-hosts or --ssh-user is given: the config file alone says how to reach a host."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_mnp, write_job
from sshnodes import SshNodes

from mnp.cluster.hosts import HostSpec
from mnp.cluster.ssh import SshCluster, SshOptions
from mnp.errors import HostError

pytestmark = pytest.mark.namespaces

WHERE = ("import json, os, socket; print('WHERE ' + json.dumps({'host': socket.gethostname(), "
         "'from': os.environ.get('SSH_CONNECTION', '').split(' ')[0]}), flush=True)")


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshNodes]:
    nodes = SshNodes(3, tmp_path_factory.mktemp("sshcfg"), up=[0, 1], silent=[2]).start()  # node 2: a hung sshd
    try:
        yield nodes
    finally:
        nodes.stop()


def _config(hosts: SshNodes, d: Path, extra: str = "", strict: str = "yes", known: str | None = None) -> Path:
    """The main file only includes; the hosts are in conf.d. ``jump`` is node 0 by address; ``inner`` is named
    ``node1``, a name that resolves only inside the nodes, so it is reachable only through the jump."""
    known = known or str(d / "cluster_known_hosts")
    (d / "conf.d").mkdir(exist_ok=True)
    (d / "conf.d" / "hosts.conf").write_text(
        f"Host jump\n    HostName {hosts.addresses[0]}\n    Port 22\n"
        "Host inner\n    HostName node1\n    ProxyJump jump\n"
        f"Host viacmd\n    HostName {hosts.addresses[1]}\n"
        f"    ProxyCommand ssh -F {d / 'ssh_config'} -o BatchMode=yes -W %h:%p jump\n"
        f"Host wrongport\n    HostName {hosts.addresses[0]}\n    Port 2222\n"
        f"Host hung\n    HostName {hosts.addresses[2]}\n    ConnectTimeout 2\n"
        "Host far\n    HostName no-such-host.invalid\n    ProxyJump jump\n"
        f"{extra}"
        # Match host is matched against the HostName: it gives every test host its login
        f"Match host {hosts.addresses[0]},{hosts.addresses[1]},node1\n    User root\n"
        f"    IdentityFile {hosts.client_key}\n    UserKnownHostsFile {known}\n"
        f"    StrictHostKeyChecking {strict}\n")
    cfg = d / "ssh_config"
    cfg.write_text(f"Include {d / 'conf.d'}/*.conf\n")
    return cfg


def _known(hosts: SshNodes, d: Path, lines: list[str] | None = None) -> Path:
    path = d / "cluster_known_hosts"
    path.write_text("".join(f"{ln}\n" for ln in (lines if lines is not None else [
        f"{hosts.addresses[0]} {hosts.host_pubs[0]}", f"node1 {hosts.host_pubs[1]}",
        f"{hosts.addresses[1]} {hosts.host_pubs[1]}"])))
    return path


def _launch(cfg: Path, names: str, d: Path, home: Path) -> tuple[int, str, list[dict[str, str]]]:
    job = write_job(d / "job.yaml", name="where", command=[sys.executable, "-c", WHERE], ranks_per_node=1,
                    mpi="mpich", transport="tcp")
    p = run_mnp(["launch", "--ssh-config", str(cfg), "--hosts", names, str(job)], home, timeout=120)
    where = [json.loads(ln.split("WHERE ", 1)[1]) for ln in p.stdout.splitlines() if "WHERE {" in ln]
    return p.returncode, p.stderr, sorted(where, key=lambda w: w["host"])


def test_include_match_hostname_user_identity_known_hosts_and_proxyjump(hosts: SshNodes, tmp_path: Path,
                                                                         mnp_home: Path) -> None:
    _known(hosts, tmp_path)
    rc, err, where = _launch(_config(hosts, tmp_path), "jump,inner", tmp_path, mnp_home)
    assert rc == 0, err
    assert [w["host"] for w in where] == ["node0", "node1"]
    assert where[0]["from"] == hosts.cluster.control_address  # jump: dialled directly from here
    assert where[1]["from"] == hosts.addresses[0]  # inner: its sshd saw the connection come from the jump host


def test_proxycommand(hosts: SshNodes, tmp_path: Path, mnp_home: Path) -> None:
    _known(hosts, tmp_path)
    rc, err, where = _launch(_config(hosts, tmp_path), "viacmd", tmp_path, mnp_home)
    assert rc == 0, err
    assert where == [{"host": "node1", "from": hosts.addresses[0]}]  # ssh -W through the jump host


@pytest.mark.parametrize("strict, known, outcome", [
    ("yes", "empty", "mnp: error: jump: unknown host key: not in known_hosts"),
    ("accept-new", "empty", "ok, recorded"),
    ("accept-new", "wrong", "mnp: error: jump: host key CHANGED"),
    ("no", "empty", "ok, recorded"),
    ("no", "wrong", "mnp: error: jump: host key CHANGED"),  # stricter than ssh, which would connect
])
def test_strict_host_key_checking(hosts: SshNodes, tmp_path: Path, mnp_home: Path, strict: str, known: str,
                                  outcome: str) -> None:
    path = _known(hosts, tmp_path, [] if known == "empty" else [f"{hosts.addresses[0]} {hosts.host_pubs[1]}"])
    rc, err, where = _launch(_config(hosts, tmp_path, strict=strict), "jump", tmp_path, mnp_home)
    if outcome.startswith("ok"):
        assert rc == 0, err
        assert [w["host"] for w in where] == ["node0"]
        assert path.read_text() == f"{hosts.addresses[0]} {hosts.host_pubs[0]}\n"  # the custom file, not ~/.ssh
    else:
        assert rc == 1, err
        assert err.strip().splitlines()[-1].startswith(outcome), err
        assert path.read_text() == ("" if known == "empty" else f"{hosts.addresses[0]} {hosts.host_pubs[1]}\n")


def test_user_known_hosts_file_is_where_keys_are_looked_up(hosts: SshNodes, tmp_path: Path, mnp_home: Path) -> None:
    """The site setup from issue #10: keys in a file UserKnownHostsFile names; nothing in ~/.ssh/known_hosts."""
    elsewhere = tmp_path / "site" / "cluster_known_hosts"
    elsewhere.parent.mkdir()
    elsewhere.write_text(f"{hosts.addresses[0]} {hosts.host_pubs[0]}\n")
    rc, err, where = _launch(_config(hosts, tmp_path, known=str(elsewhere)), "jump", tmp_path, mnp_home)
    assert rc == 0, err
    assert [w["host"] for w in where] == ["node0"]


@pytest.mark.parametrize("names, message", [
    ("wrongport", "mnp: error: wrongport: connection refused on port 2222"),
    ("far", "mnp: error: far: ProxyJump jump cannot reach no-such-host.invalid port 22"),
])
def test_port_and_proxyjump_failures_name_the_host(hosts: SshNodes, tmp_path: Path, mnp_home: Path, names: str,
                                                   message: str) -> None:
    _known(hosts, tmp_path)
    rc, err, _ = _launch(_config(hosts, tmp_path), names, tmp_path, mnp_home)
    assert rc == 1, err
    assert err.strip().splitlines()[-1].startswith(message), err
    assert "Traceback" not in err


def test_bad_config_is_one_line_exit_2(hosts: SshNodes, tmp_path: Path, mnp_home: Path) -> None:
    cfg = _config(hosts, tmp_path, extra="Host broken\n    Frobnicate yes\n")
    rc, err, _ = _launch(cfg, "jump", tmp_path, mnp_home)
    assert rc == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("mnp: error: jump: ssh_config: ") and "Bad configuration option: frobnicate" in last, err


def test_connect_timeout_from_config(hosts: SshNodes, tmp_path: Path) -> None:
    """ConnectTimeout applies where no connect timeout is given (the library's SshOptions; the CLI always gives
    its own, 10 s by default): a hung sshd is reported after the config's 2 s."""
    cluster = SshCluster("cfgtimeout", [HostSpec("hung")], SshOptions(config_file=str(_config(hosts, tmp_path))))
    t0 = time.monotonic()
    with pytest.raises(HostError) as e:
        cluster.create(None)
    took = time.monotonic() - t0
    cluster.dialer.close()
    assert str(e.value) == ("hung: port 22 accepted the connection but no SSH server answered within 2s (sshd hung or "
                            "overloaded, or another service on that port)")
    assert 1.5 < took < 4.5, took
