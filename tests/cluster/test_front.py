"""The pool's front (:mod:`mnp.cli.front`) on its own: a real front process on a real Unix socket, serving a home
whose pool file names a host (no pool agent is needed to see what the front does with a command line); the jobs
that cross it to real pool agents are in test_pool.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, run_mnp

from mnp.cli.front import _wants_front

KEY = "0" * 40


def _env(home: Path, **more: str) -> dict[str, str]:
    return {**os.environ, "MNP_HOME": str(home), **more}


def _py(home: Path, code: str, **kw: object) -> subprocess.CompletedProcess[str]:
    """``code`` run by a Python in ``home`` (the front's client functions are what it calls)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                          env=_env(home), cwd=ROOT, **kw)  # type: ignore[call-overload]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _info(home: Path) -> tuple[int, int] | None:
    p = _py(home, "from mnp.cli.front import front_info; print(front_info())")
    assert p.returncode == 0, p.stderr
    return eval(p.stdout)  # noqa: S307 - a tuple or None that our own code printed


def _wait_gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def _pool_file(home: Path, port: int = 9) -> Path:
    """A pool file naming one host, h1, whose pool agent would be at loopback ``port`` (none is)."""
    f = home / "pool.json"
    f.write_text(json.dumps({"public": KEY, "secret": KEY,
                             "hosts": {"h1": {"address": "127.0.0.1", "port": port, "public": KEY}}}))
    f.chmod(0o600)
    return f


@pytest.fixture
def front(mnp_home: Path) -> Iterator[int]:
    """A front serving ``mnp_home`` (its pool file names one host), as ``mnp pool start`` starts it; stopped
    afterwards, and then it must be gone, with its socket."""
    _pool_file(mnp_home)
    p = _py(mnp_home, "from mnp.cli.front import start_front; print(start_front(60))")
    assert p.returncode == 0 and p.stdout.strip().isdigit(), (p.stdout, p.stderr)
    pid = int(p.stdout)
    try:
        assert _alive(pid) and "mnp.cli.front" in Path(f"/proc/{pid}/cmdline").read_text()
        yield pid
    finally:
        _py(mnp_home, "from mnp.cli.front import stop_front; stop_front()")
        if not _wait_gone(pid, 10):
            os.kill(pid, 9)
            pytest.fail("the front did not stop when asked")
        assert not (mnp_home / "front.sock").exists()


@pytest.mark.noroot
@pytest.mark.parametrize(("argv", "env", "wanted"), [
    (["mnp", "launch", "--via", "pool", "job.yaml"], {}, True),
    (["mnp", "run", "--via=pool", "-n", "2", "true"], {}, True),
    (["mnp", "run", "-n", "2", "true"], {"MNP_VIA": "pool"}, True),
    (["mnp", "run", "--via", "ssh", "true"], {"MNP_VIA": "pool"}, False),  # the option wins, as click's envvar
    (["mnp", "run", "--", "prog", "--via", "pool"], {}, False),  # the program's own arguments
    (["mnp", "run", "--via", "pool", "true"], {"MNP_FRONT": "0"}, False),
    (["mnp", "pool", "start", "--via", "pool"], {}, False),
    (["mnp", "status", "--via", "pool"], {}, False),
    (["mnp", "run", "--via"], {}, False),
])
def test_which_command_lines_go_to_the_front(argv: list[str], env: dict[str, str], wanted: bool,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MNP_VIA", raising=False)
    monkeypatch.delenv("MNP_FRONT", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert _wants_front(argv) is wanted


def test_a_command_line_runs_in_a_child_of_the_front(front: int, mnp_home: Path, tmp_path: Path) -> None:
    """Output, error stream, exit status, working directory and environment are the client's: a relative
    hostfile is read from the client's directory, MNP_VIA in its environment routes it, the usage error (a host
    that is not in the pool) is the one mnp gives, and the front counts the job."""
    (tmp_path / "rel-hosts").write_text("elsewhere\n")
    p = run_mnp(["run", "--hostfile", "rel-hosts", "true"], mnp_home, timeout=30, env={"MNP_VIA": "pool"},
                cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith(
        "mnp: error: host elsewhere: no pool agent started for it"), p.stderr
    assert "Traceback" not in p.stderr
    assert _info(mnp_home) == (front, 1)
    p = run_mnp(["run", "--via", "pool", "--help"], mnp_home, timeout=30)
    assert p.returncode == 0 and p.stdout.startswith("Usage: ") and "--via" in p.stdout, p.stderr
    assert _info(mnp_home) == (front, 2)
    p = run_mnp(["run", "--via", "pool", "--no-such-option", "true"], mnp_home, timeout=30)
    assert p.returncode == 2 and p.stderr == "mnp: error: No such option '--no-such-option'.\n", p.stderr
    # MNP_FRONT=0: the client runs it itself (same answer, the front's count unchanged)
    p = run_mnp(["run", "--hostfile", "rel-hosts", "--via", "pool", "true"], mnp_home, timeout=30,
                env={"MNP_FRONT": "0"}, cwd=tmp_path)
    assert p.returncode == 2 and "host elsewhere: " in p.stderr, p.stderr
    assert _info(mnp_home) == (front, 3)
    assert not _children(front)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _waiting_client(home: Path, cwd: Path, out: Path, stdin_closed: bool = False) -> tuple[subprocess.Popen[str], int]:
    """``mnp run --via pool`` to the pool's one host, whose pool agent never answers (nothing listens on its
    loopback port; mnp gives up after 5 s), from a client with its own umask, open-file limit,
    directory and stdout (a file): the client and the job's mnp, the front's child, once it runs."""
    code = ("import os, resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (200, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
            "os.umask(0o027)\n"
            + ("os.close(0)\n" if stdin_closed else "") +
            "sys.argv[0] = 'mnp'\n"
            "from mnp.cli import main\n"
            "main()\n")
    (cwd / "hosts").write_text("h1\n")
    with out.open("w") as f:
        proc = subprocess.Popen([sys.executable, "-c", code, "run", "--hostfile", "hosts", "--via", "pool", "true"],
                                stdout=f, stderr=subprocess.PIPE, text=True, env=_env(home),
                                cwd=cwd)
    deadline = time.monotonic() + 10
    front = _children_of_front(home)
    while not front and time.monotonic() < deadline:
        time.sleep(0.02)
        front = _children_of_front(home)
    if not front:
        proc.kill()
        proc.communicate()
        pytest.fail("the front started no child")
    return proc, front[0]


def _links(pid: int) -> set[str]:
    return {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}


def _children_of_front(home: Path) -> list[int]:
    info = _info(home)
    return _children(info[0]) if info else []


def test_the_job_s_mnp_is_the_client_s_own_but_for_its_parent(front: int, mnp_home: Path, tmp_path: Path) -> None:
    """Seen from /proc while the job waits for its pool agent: the front's child has the client's stdout (the
    file itself, not a copy), directory, umask and open-file limit, and none of the front's own
    descriptors; the client has no child. Its Ctrl-C reaches the job (130, one line); its SIGTERM too (143)."""
    _pool_file(mnp_home, port=_free_port())
    out = tmp_path / "out"
    for sig, code in ((2, 130), (15, 143)):
        proc, child = _waiting_client(mnp_home, tmp_path, out)
        try:
            assert os.readlink(f"/proc/{child}/fd/1") == str(out)
            assert os.readlink(f"/proc/{child}/cwd") == str(tmp_path)
            status = Path(f"/proc/{child}/status").read_text()
            assert "Umask:\t0027" in status, status
            limits = Path(f"/proc/{child}/limits").read_text()
            assert any(line.startswith("Max open files") and line.split()[3] == "200" for line in limits.splitlines())
            fds = _links(child)
            assert not [f for f in fds if "front.l" in f], fds  # (its lock and its log)
            # of the front's sockets (its listener, its wake-up pair, other clients'), only its own client's
            shared = fds & {f for f in _links(front) if f.startswith("socket:")}
            assert len(shared) == 1, (shared, fds)
            assert not _children(proc.pid)
            t0 = time.monotonic()
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=30)
            took = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == code and "Traceback" not in err, (sig, proc.returncode, err)
        assert took < 3, took  # at once, not when mnp gives up on the pool agent (5 s)
        assert _wait_gone(child, 5)


def test_a_job_killed_outright_kills_its_client_and_closed_stdin_is_dev_null(front: int, mnp_home: Path,
                                                                             tmp_path: Path) -> None:
    """The job's mnp killed by SIGKILL (the OOM killer, say): the client dies of the same signal, as the shell
    would have seen; a client whose stdin was closed hands the job /dev/null there, never its own socket."""
    _pool_file(mnp_home, port=_free_port())
    proc, child = _waiting_client(mnp_home, tmp_path, tmp_path / "out", stdin_closed=True)
    try:
        assert os.readlink(f"/proc/{child}/fd/0") == "/dev/null"
        os.kill(child, 9)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -9 and "Traceback" not in err, (proc.returncode, err)


def test_a_signal_sent_with_the_request_is_not_lost(front: int, mnp_home: Path, tmp_path: Path) -> None:
    """A signal caught while the client sends its request may travel in the same bytes: the front hands it to
    the job's mnp once forked (the job ends 143, interrupted, not 1 when its pool agent does not answer)."""
    from mnp.cli.front import _connect, _request

    _pool_file(mnp_home, port=_free_port())
    (tmp_path / "hosts").write_text("h1\n")
    code = ("import array, os, socket, sys, time\n"
            "from mnp.cli.front import _connect, _request, _frame, front_path\n"
            "argv = ['mnp', 'run', '--hostfile', 'hosts', '--via', 'pool', 'true']\n"
            "s = _connect(front_path())\n"
            "s.sendmsg([_frame(_request(argv)) + b'sig 15\\n'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, "
            "array.array('i', (0, 1, 2)))])\n"
            "got = b''\n"
            "while not got.endswith(b'\\n') or b'exit' not in got:\n"
            "    chunk = s.recv(100)\n"
            "    if not chunk: break\n"
            "    got += chunk\n"
            "print('GOT', got.split()[-2:])\n")
    del _connect, _request
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                       env=_env(mnp_home), cwd=tmp_path)
    words = p.stdout.split()
    assert p.returncode == 0 and words[:3] == ["GOT", "[b'exit',", "b'143']"], (p.stdout, p.stderr)
    assert "CANCELLED: interrupted by SIGTERM" in p.stderr, p.stderr


def test_a_front_killed_under_a_running_job(front: int, mnp_home: Path, tmp_path: Path) -> None:
    """The front SIGKILLed while a job runs: the job's mnp goes on, the client's Ctrl-C still reaches it (sent
    straight to it through the pidfd it sent), its status still comes back; the next job finds no front (the socket
    file left behind refuses the connection) and runs in its own client."""
    _pool_file(mnp_home, port=_free_port())
    proc, child = _waiting_client(mnp_home, tmp_path, tmp_path / "out")
    try:
        os.kill(front, 9)
        assert _wait_gone(front, 5) and _alive(child)
        proc.send_signal(2)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if _alive(child):  # (no front is left to hang it up)
            os.kill(child, 9)
    assert proc.returncode == 130 and "CANCELLED" in err, (proc.returncode, err)
    assert (mnp_home / "front.sock").exists() and _info(mnp_home) is None
    p = run_mnp(["run", "--hosts", "elsewhere", "--via", "pool", "true"], mnp_home, timeout=30)
    assert p.returncode == 2 and "host elsewhere: " in p.stderr, p.stderr
    (mnp_home / "front.sock").unlink()


def test_a_killed_client_hangs_its_job_up(front: int, mnp_home: Path, tmp_path: Path) -> None:
    """The client killed outright (no signal to forward): its connection's end is the job's SIGHUP, as a closed
    terminal's would be, and the front goes on serving."""
    _pool_file(mnp_home, port=_free_port())
    proc, child = _waiting_client(mnp_home, tmp_path, tmp_path / "out")
    proc.kill()
    proc.communicate(timeout=10)
    assert _wait_gone(child, 5)
    assert _info(mnp_home) == (front, 1) and not _children(front)


def test_another_user_is_refused_even_with_the_socket_opened(front: int, mnp_home: Path) -> None:
    """The socket is 0600 in a 0700 home; with its mode opened to all (a mistake), a peer of another uid still
    gets nothing: its kernel credentials are checked. The front then still serves its own user."""
    sock = mnp_home / "front.sock"
    assert sock.stat().st_mode & 0o777 == 0o600
    sock.chmod(0o666)
    try:
        code = ("import os, socket, json\n"
                f"d = os.open({str(mnp_home)!r}, os.O_PATH)\n"  # opened as root: the home's mode is not in the way
                "os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)\n"
                "s = socket.socket(socket.AF_UNIX)\n"
                "s.connect(f'/proc/self/fd/{d}/front.sock')\n"
                "body = json.dumps({'op': 'ping'}).encode()\n"
                "try:\n"
                "    s.sendall(len(body).to_bytes(4, 'big') + body)\n"
                "    print('GOT', s.recv(100))\n"
                "except ConnectionResetError:\n"
                "    print('GOT', b'')\n")
        p = _py(mnp_home, code)
        assert p.returncode == 0 and p.stdout.strip() == "GOT b''", (p.stdout, p.stderr)
    finally:
        sock.chmod(0o600)
    assert _info(mnp_home) == (front, 0)


def _raw(home: Path, payload: bytes) -> bytes:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    try:
        s.connect(str(home / "front.sock"))
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(4096):
            got += chunk
        return got
    finally:
        s.close()


def test_malformed_requests_get_nothing_and_change_nothing(front: int, mnp_home: Path) -> None:
    from mnp.cli.front import _identity

    me = _identity()
    frames = [b"", b"\x00\x00", b"\xff\xff\xff\xff" + b"x" * 100, (5).to_bytes(4, "big") + b"[1,2]",
              (3).to_bytes(4, "big") + b"{{{"]
    for payload in frames:
        assert _raw(mnp_home, payload) == b"", payload
    body = json.dumps({"op": "run", **me, "argv": ["mnp", "--version"], "env": {}, "cwd": "/"}).encode()
    assert _raw(mnp_home, len(body).to_bytes(4, "big") + body).startswith(b"refused")  # no descriptors with it
    body = json.dumps({"op": "dance", **me}).encode()
    assert _raw(mnp_home, len(body).to_bytes(4, "big") + body).startswith(b"refused")
    assert _info(mnp_home) == (front, 0) and not _children(front)


def test_a_front_of_another_mnp_refuses_and_goes(front: int, mnp_home: Path) -> None:
    """Another install of mnp (another checkout or venv) sharing the home is refused, and the front stays; this
    mnp upgraded or edited while its front runs: the front says so, runs nothing and exits; the job runs in its
    client (the front's count never moved), and the next pool start makes a current front."""
    from mnp.cli.front import _identity

    body = json.dumps({"op": "ping", **_identity(), "root": "/elsewhere/mnp"}).encode()
    assert _raw(mnp_home, len(body).to_bytes(4, "big") + body).startswith(b"refused stale")
    time.sleep(1.5)
    assert _info(mnp_home) == (front, 0)
    body = json.dumps({"op": "ping", **_identity(), "version": "0.0.0-older"}).encode()
    assert _raw(mnp_home, len(body).to_bytes(4, "big") + body).startswith(b"refused stale")
    assert _wait_gone(front, 10)
    assert _info(mnp_home) is None
    p = run_mnp(["run", "--hosts", "elsewhere", "--via", "pool", "true"], mnp_home, timeout=30)
    assert p.returncode == 2 and "host elsewhere: " in p.stderr, p.stderr
    p = _py(mnp_home, "from mnp.cli.front import start_front; print(start_front(60))")
    again = int(p.stdout)
    assert again != front and _info(mnp_home) == (again, 0)
    _py(mnp_home, "from mnp.cli.front import stop_front; stop_front()")
    assert _wait_gone(again, 10)


def test_the_front_goes_with_its_pool_file_and_after_its_idle_time(mnp_home: Path) -> None:
    pool = _pool_file(mnp_home)
    p = _py(mnp_home, "from mnp.cli.front import start_front; print(start_front(60))")
    pid = int(p.stdout)
    try:
        pool.unlink()  # its pool is gone (mnp pool stop by another mnp, or the home removed)
        assert _wait_gone(pid, 5)
        assert not (mnp_home / "front.sock").exists()
        _pool_file(mnp_home)
        p = _py(mnp_home, "from mnp.cli.front import start_front; print(start_front(1))")
        pid = int(p.stdout)
        assert _wait_gone(pid, 6)  # one second with no job, checked each second
    finally:
        if _alive(pid):
            os.kill(pid, 9)


@pytest.mark.noroot
def test_the_identity_follows_the_modules_not_their_directories(tmp_path: Path) -> None:
    """An edited or added module makes a front stale; Python's __pycache__ and an editor's swap file do not."""
    from mnp.cli.front import _newest

    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    mod = pkg / "sub" / "mod.py"
    mod.write_text("x = 1\n")
    os.utime(mod, ns=(10**18, 10**18))
    first = _newest(str(pkg))
    (pkg / "sub" / "__pycache__").mkdir()
    (pkg / "sub" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"")
    (pkg / "sub" / ".mod.py.swp").write_bytes(b"")
    assert _newest(str(pkg)) == first == 10**18
    os.utime(mod, ns=(10**18 + 1, 10**18 + 1))
    assert _newest(str(pkg)) == first + 1
    (pkg / "new.py").write_text("")
    assert _newest(str(pkg)) > first + 1


def test_the_front_does_not_import_from_where_pool_start_ran(mnp_home: Path, tmp_path: Path) -> None:
    """A ``yaml.py`` in the directory `mnp pool start` ran from is not what the front (and every job's mnp it
    forks) imports."""
    _pool_file(mnp_home)
    (tmp_path / "yaml.py").write_text(f"open({str(tmp_path / 'IMPORTED')!r}, 'w').close()\n")
    p = subprocess.run([sys.executable, "-c", "from mnp.cli.front import start_front; print(start_front(60))"],
                       capture_output=True, text=True, timeout=30, env=_env(mnp_home), cwd=tmp_path)
    pid = int(p.stdout) if p.stdout.strip().isdigit() else None
    try:
        assert pid is not None, p.stderr
        assert not (tmp_path / "IMPORTED").exists()
        assert _info(mnp_home) == (pid, 0)
    finally:
        _py(mnp_home, "from mnp.cli.front import stop_front; stop_front()")
        if pid is not None and not _wait_gone(pid, 10):
            os.kill(pid, 9)


def test_a_request_whose_client_is_gone_starts_no_job(front: int, mnp_home: Path, tmp_path: Path) -> None:
    """A client that gave up (killed, timed out) while its request waited: the front finds its connection hung up
    and forks nothing (no job record, no output after the shell's prompt)."""
    code = ("import array, socket, sys\n"
            "from mnp.cli.front import _connect, _request, _frame, front_path\n"
            "s = _connect(front_path())\n"
            "s.sendmsg([_frame(_request(['mnp', 'run', '--via', 'pool', '--help']))], [(socket.SOL_SOCKET, "
            "socket.SCM_RIGHTS, array.array('i', (0, 1, 2)))])\n"
            "s.close()\n")
    out = tmp_path / "out"
    os.kill(front, signal.SIGSTOP)  # (so that the client is surely gone before the front reads its request)
    try:
        with out.open("w") as f:  # (a file: a pipe would stay open in the request's descriptors until it is read)
            p = subprocess.run([sys.executable, "-c", code], stdout=f, stderr=subprocess.STDOUT, timeout=30,
                               env=_env(mnp_home), cwd=tmp_path)
    finally:
        os.kill(front, signal.SIGCONT)
    time.sleep(0.5)
    assert p.returncode == 0 and out.read_text() == "", out.read_text()
    assert _info(mnp_home) == (front, 0)
