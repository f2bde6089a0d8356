"""The pool's front: a job launched ``--via pool`` starts without loading mnp.

``mnp pool start`` also starts, on this machine, one process that has imported everything a launch needs (click,
the job file's YAML and checks, pyzmq, the coordinator, the records) and listens on ``$MNP_HOME/front.sock``
(0600, in the 0700 home; a peer of another uid is refused by its kernel credentials). ``mnp launch|run --via
pool`` (or ``MNP_VIA=pool``) then does not import any of that: it hands the front its arguments, environment,
working directory, umask, CPU affinity and resource limits, and its own stdin, stdout and stderr (the
descriptors themselves, ``SCM_RIGHTS``); the front forks, the child becomes that ``mnp`` (same code, same
descriptors, so a terminal is still a terminal) and runs the job, and the client exits with the job's status. The
client forwards SIGINT, SIGTERM and SIGHUP to the child; a client that dies (SIGKILL) hangs the job up (SIGHUP),
as a closed terminal would. ``mnp cancel`` signals the child, which is the job's mnp process in its record.
The same trade as Slurm's ``srun`` (a client of slurmctld and slurmstepd) and Flux's ``flux run`` (a client of its
broker): the work that does not change between jobs is done once.

Anything the front cannot do (none serves this home, it serves another mnp or Python, it is dying) leaves the
client to run the job itself, as before; ``MNP_FRONT=0`` never asks. The front exits with the pool (``mnp pool
stop``, or its file gone) or after the pool's idle time with no job.

Wire (one Unix stream connection per request): the client sends a 4-byte big-endian length and a JSON object
(``op``: ``run``, ``ping`` or ``stop``) in one ``sendmsg`` carrying its descriptors 0, 1, 2 for ``run``, then
lines ``sig N``. The front answers lines: ``started PID``, then ``exit N`` or ``killed N`` (the child's end,
written by the child and again by the front when it reaps it: the first counts), or ``refused REASON`` before
anything ran; ``pong PID JOBS`` and ``stopping PID``.
"""

from __future__ import annotations

import os
import signal
import socket
import sys

__all__ = ["try_front", "front_path", "front_info", "ping_front", "start_front", "stop_front", "serve"]

SOCKET = "front.sock"
MAX_REQUEST = 4 << 20
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_LIMITS = ("RLIMIT_NOFILE", "RLIMIT_CORE", "RLIMIT_STACK", "RLIMIT_MEMLOCK", "RLIMIT_NPROC", "RLIMIT_AS",
           "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_CPU")


def _home() -> str:
    return os.path.abspath(os.environ.get("MNP_HOME") or os.path.join(os.path.expanduser("~"), ".mnp"))


def front_path() -> str:
    return os.path.join(_home(), SOCKET)


def _connect(path: str, timeout: float | None = None) -> socket.socket:
    """A connection to the socket at ``path``; a path longer than a socket address holds is reached through its
    directory's descriptor (``/proc/self/fd/N/front.sock``)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(timeout)
    try:
        if len(path.encode()) < 100:
            s.connect(path)
        else:
            d = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
            try:
                s.connect(f"/proc/self/fd/{d}/{os.path.basename(path)}")
            finally:
                os.close(d)
    except BaseException:
        s.close()
        raise
    return s


def _identity() -> dict[str, str]:
    """What must be the same on both sides: the interpreter and the mnp package it runs."""
    import mnp

    return {"version": mnp.__version__, "exe": os.path.realpath(sys.executable),
            "root": os.path.dirname(os.path.realpath(mnp.__file__))}


def _frame(obj: dict[str, object]) -> bytes:
    import json

    body = json.dumps(obj).encode()
    return len(body).to_bytes(4, "big") + body


# ---------------------------------------------------------------------------------------------------- the client

def _wants_front(argv: list[str]) -> bool:
    if os.environ.get("MNP_FRONT", "1") == "0" or len(argv) < 2 or argv[1] not in ("launch", "run"):
        return False
    for i, a in enumerate(argv[2:], 2):
        if a == "--":
            break
        if a == "--via=pool" or (a == "--via" and argv[i + 1:i + 2] == ["pool"]):
            return True
        if a == "--via" or a.startswith("--via="):
            return False
    return os.environ.get("MNP_VIA") == "pool"


def try_front(argv: list[str], pending: list[int]) -> None:
    """Run this ``mnp launch|run --via pool`` through the pool's front and exit with the job's status; return
    (nothing ran) when no front serves this home or it refuses. ``pending``: signals caught so far (by
    :func:`mnp.interrupts.catch_early`), forwarded once the request is in; later ones are forwarded as they come."""
    if not _wants_front(argv):
        return
    path = front_path()
    try:
        s = _connect(path)
    except OSError:
        return
    try:
        _run_remote(s, argv, pending)
    finally:
        s.close()


def _std_fds() -> list[int]:
    out = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            out.append(fd)
        except OSError:  # closed: the child gets /dev/null there, as the kernel's own default would be nothing
            out.append(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
    return out


def _run_remote(s: socket.socket, argv: list[str], pending: list[int]) -> None:
    import array

    limits = {}
    import resource

    for name in _LIMITS:
        if hasattr(resource, name):
            limits[name] = list(resource.getrlimit(getattr(resource, name)))
    umask = os.umask(0)
    os.umask(umask)
    req = {"op": "run", **_identity(), "argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "umask": umask,
           "affinity": sorted(os.sched_getaffinity(0)), "limits": limits}
    fds = _std_fds()
    try:
        s.sendmsg([_frame(req)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    except OSError:
        return
    sent = 0

    def forward() -> None:
        nonlocal sent
        while sent < len(pending):
            try:
                s.sendall(b"sig %d\n" % pending[sent])
            except OSError:
                pass
            sent += 1

    def on_signal(signum: int, _frame: object) -> None:
        pending.append(signum)
        forward()

    for sig in FORWARDED:
        signal.signal(sig, on_signal)
    forward()
    buf, started = b"", False
    while True:
        try:
            chunk = s.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            if not started:
                return  # the front went away before it ran anything: run the job here
            sys.stderr.write("mnp: error: the pool's front ended without the job's exit status (its mnp process "
                             "was killed?): see mnp status\n")
            raise SystemExit(1)
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            word, _, arg = line.decode(errors="replace").partition(" ")
            if word == "started":
                started = True
            elif word == "refused" and not started:
                return
            elif word == "exit":
                raise SystemExit(int(arg))
            elif word == "killed":
                signum = int(arg)
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
                raise SystemExit(128 + signum)


def _ask(op: str, timeout: float = 5.0) -> str | None:
    """The front's one-line answer to ``op`` (``ping``, ``stop``); None when none answers."""
    try:
        s = _connect(front_path(), timeout)
    except OSError:
        return None
    try:
        s.sendall(_frame({"op": op, **_identity()}))
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                return None
            buf += chunk
        return buf.split(b"\n", 1)[0].decode(errors="replace")
    except OSError:
        return None
    finally:
        s.close()


def front_info() -> tuple[int, int] | None:
    """The front serving this home, if one answers and runs this mnp: its pid and the jobs it has started."""
    ans = _ask("ping")
    words = ans.split() if ans else []
    if len(words) == 3 and words[0] == "pong" and words[1].isdigit() and words[2].isdigit():
        return int(words[1]), int(words[2])
    return None


def ping_front() -> int | None:
    """The pid of the front serving this home, if one answers and runs this mnp."""
    info = front_info()
    return info[0] if info else None


def stop_front(wait_s: float = 10.0) -> bool:
    """Ask the front serving this home to exit once its jobs have ended, and wait up to ``wait_s`` for it to be
    gone; whether it is."""
    import time

    ans = _ask("stop")
    if not ans or not ans.startswith("stopping "):
        return ans is None
    pid = int(ans.split()[1])
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except (OSError, IndexError):
            return True
        time.sleep(0.02)
    return False


def start_front(idle_s: float) -> int | None:
    """A front for this home (the one answering, or a new one, detached); its pid, or None if it did not come up
    within 10 s (jobs then start without it)."""
    import subprocess
    import time

    pid = ping_front()
    if pid is not None:
        return pid
    log = os.path.join(_home(), "front.log")
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        subprocess.Popen([sys.executable, "-m", "mnp.cli.front", "--idle", repr(float(idle_s))],
                         stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True, close_fds=True)
    finally:
        os.close(fd)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (pid := ping_front()) is not None:
            return pid
        time.sleep(0.02)
    return None


# ----------------------------------------------------------------------------------------------------- the front

PRELOAD = ("mnp.cli.main", "mnp.cli.run", "mnp.cli.layout", "mnp.cli.render", "mnp.spec.model",
           "mnp.cluster.hosts", "mnp.cluster.sshopts", "mnp.cluster.pool", "mnp.records", "mnp.node.telemetry",
           "zmq", "mnp.coordinator.bringup", "mnp.coordinator.job", "mnp.coordinator.attempts",
           "mnp.fabric.ifaces", "mnp.fabric.bands")


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.child: int | None = None
        self.buf = b""
        self.open = True  # the client has not hung up

    def say(self, line: str) -> None:
        try:
            self.sock.sendall(line.encode() + b"\n")
        except OSError:
            pass


def _read_request(sock: socket.socket) -> tuple[dict[str, object], list[int]]:
    import array
    import json

    fds: list[int] = []
    data = b""
    sock.settimeout(2.0)
    ancsize = socket.CMSG_SPACE(3 * array.array("i").itemsize)
    while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
        if len(data) >= 4 and int.from_bytes(data[:4], "big") > MAX_REQUEST:
            raise ValueError("request too large")
        chunk, anc, _flags, _addr = sock.recvmsg(1 << 16, ancsize if not fds else 0)
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(raw[:len(raw) - len(raw) % got.itemsize])
                fds.extend(got)
        if not chunk:
            raise ValueError("the client hung up")
        data += chunk
    n = int.from_bytes(data[:4], "big")
    req = json.loads(data[4:4 + n])
    if not isinstance(req, dict):
        raise ValueError("not a request")
    sock.settimeout(None)
    return req, fds


def serve(idle_s: float) -> None:
    """The front's loop (``python -m mnp.cli.front``): one per home (a lock held for its life)."""
    import fcntl
    import importlib
    import select
    import time

    home = _home()
    lock = os.open(os.path.join(home, "front.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another front serves this home
    path = front_path()
    me = _identity()
    os.chdir("/")  # (each job's mnp goes to its client's directory)
    for name in PRELOAD:
        importlib.import_module(name)
    import gc

    gc.collect()
    gc.freeze()  # what every child shares stays out of its collections (and its pages stay shared)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    tmp = f"{path}.{os.getpid()}"
    old = os.umask(0o177)
    try:
        if os.path.exists(tmp):
            os.unlink(tmp)
        _bind(listener, tmp)
    finally:
        os.umask(old)
    os.replace(tmp, path)
    listener.listen(64)
    ino = os.stat(path).st_ino
    wake_r, wake_w = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    stopping = False
    served = 0

    def on_term(_s: int, _f: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGCHLD, lambda _s, _f: None)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    conns: dict[int, _Conn] = {}  # by socket fd
    children: dict[int, _Conn] = {}
    last = time.monotonic()
    pool_file = os.path.join(home, "pool.json")
    while True:
        if not children and (stopping or time.monotonic() - last > idle_s or not _pool_alive(pool_file)):
            break
        ready, _, _ = select.select([listener, wake_r, *[c.sock for c in conns.values() if c.open]], [], [], 1.0)
        for r in ready:
            if r is wake_r:
                try:
                    wake_r.recv(4096)
                except OSError:
                    pass
            elif r is listener:
                last = time.monotonic()
                try:
                    sock, _ = listener.accept()
                except OSError:
                    continue
                conn = _Conn(sock)
                if stopping or not _same_user(sock):
                    sock.close()
                    continue
                try:
                    req, fds = _read_request(sock)
                except (OSError, ValueError):
                    sock.close()
                    continue
                op = req.get("op")
                if any(req.get(k) != v for k, v in me.items()):
                    conn.say("refused stale: this front runs another mnp or Python")
                    for fd in fds:
                        os.close(fd)
                    sock.close()
                    stopping = True  # the pool start that comes next makes a current one
                    continue
                if op == "ping":
                    conn.say(f"pong {os.getpid()} {served}")
                    sock.close()
                elif op == "stop":
                    stopping = True
                    conn.say(f"stopping {os.getpid()}")
                    sock.close()
                elif op == "run" and len(fds) == 3:
                    conns[sock.fileno()] = conn
                    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
                    try:
                        pid = os.fork()
                    except OSError as e:
                        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                        conn.say(f"refused fork: {e.strerror}")
                        del conns[sock.fileno()]
                        sock.close()
                    else:
                        if pid == 0:
                            _child(conn, req, fds, [listener, wake_r, wake_w, *(c.sock for c in conns.values()
                                                                                if c is not conn)], lock)
                        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                        conn.child = pid
                        children[pid] = conn
                        served += 1
                    for fd in fds:
                        os.close(fd)
                else:
                    for fd in fds:
                        os.close(fd)
                    conn.say("refused: not a request")
                    sock.close()
            else:
                conn = conns[r.fileno()]
                _relay(conn)
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = children.pop(pid)
            conn.say(f"killed {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else
                     f"exit {os.waitstatus_to_exitcode(status)}")
            conns.pop(conn.sock.fileno(), None)
            conn.sock.close()
            last = time.monotonic()
    try:
        if os.stat(path).st_ino == ino:
            os.unlink(path)
    except OSError:
        pass


def _bind(sock: socket.socket, path: str) -> None:
    if len(path.encode()) < 100:
        sock.bind(path)
        return
    d = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
    try:
        sock.bind(f"/proc/self/fd/{d}/{os.path.basename(path)}")
    finally:
        os.close(d)


def _pool_alive(pool_file: str) -> bool:
    """The pool this front serves still has hosts (``mnp pool stop`` of all of them, or its home removed, ends
    the front)."""
    import json

    try:
        with open(pool_file) as f:
            return bool(json.load(f).get("hosts"))
    except (OSError, ValueError, AttributeError):
        return False


def _same_user(sock: socket.socket) -> bool:
    import struct

    try:
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                              struct.calcsize("3i")))
    except OSError:
        return False
    return uid == os.geteuid()


def _relay(conn: _Conn) -> None:
    """The client's lines: signals for its job's mnp; its hang-up is the job's SIGHUP."""
    try:
        chunk = conn.sock.recv(4096)
    except OSError:
        chunk = b""
    if not chunk:
        conn.open = False
        if conn.child is not None:
            _kill(conn.child, signal.SIGHUP)
        return
    conn.buf += chunk
    while b"\n" in conn.buf:
        line, conn.buf = conn.buf.split(b"\n", 1)
        word, _, arg = line.partition(b" ")
        if word == b"sig" and arg.isdigit() and int(arg) in FORWARDED and conn.child is not None:
            _kill(conn.child, int(arg))
    if len(conn.buf) > 4096:
        conn.buf = b""


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _child(conn: _Conn, req: dict[str, object], fds: list[int], others: list[socket.socket], lock: int) -> None:
    """The forked job's mnp: become the client's process (environment, directory, limits, descriptors) and run
    the command line as ``mnp`` would; never returns."""
    code = 1
    try:
        from mnp.interrupts import catch_early

        catch_early()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        for s in others:
            s.close()
        os.close(lock)
        _become(req, fds)
    except Exception as e:  # nothing ran: the client runs the job itself
        conn.say(f"refused {type(e).__name__}: {e}")
        os._exit(1)
    conn.say(f"started {os.getpid()}")
    try:
        from mnp.cli.main import main

        main()
        code = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            import atexit

            atexit._run_exitfuncs()
            for f in (sys.stdout, sys.stderr):
                f.flush()
        except BaseException:
            pass
        conn.say(f"exit {code}")
        os._exit(code)


def _become(req: dict[str, object], fds: list[int]) -> None:
    import io
    import random
    import resource
    import tempfile

    env, argv, cwd = req["env"], req["argv"], req["cwd"]
    if not (isinstance(env, dict) and isinstance(argv, list) and isinstance(cwd, str)):
        raise ValueError("a malformed request")
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in env.items()})
    os.chdir(cwd)
    os.umask(int(req.get("umask", 0o022)))  # type: ignore[call-overload]
    aff = req.get("affinity")
    if isinstance(aff, list) and aff:
        try:
            os.sched_setaffinity(0, [int(c) for c in aff])
        except OSError:
            pass
    limits = req.get("limits")
    for name, pair in (limits.items() if isinstance(limits, dict) else ()):
        if name in _LIMITS and hasattr(resource, name) and isinstance(pair, list) and len(pair) == 2:
            try:
                resource.setrlimit(getattr(resource, name), (int(pair[0]), int(pair[1])))
            except (OSError, ValueError):
                pass
    for target, fd in zip((0, 1, 2), fds):
        os.dup2(fd, target)
        os.close(fd)
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    sys.stdin = io.TextIOWrapper(open(0, "rb", closefd=False), encoding="utf-8",
                               errors="surrogateescape")
    out_tty = os.isatty(1)
    sys.stdout = io.TextIOWrapper(open(1, "wb", closefd=False), encoding="utf-8",
                                errors="surrogateescape", line_buffering=out_tty, write_through=unbuffered)
    sys.stderr = io.TextIOWrapper(open(2, "wb", closefd=False), encoding="utf-8",
                                errors="backslashreplace", line_buffering=True, write_through=unbuffered)
    sys.argv = [str(a) for a in argv]
    random.seed()
    tempfile.tempdir = None


def _main() -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m mnp.cli.front")
    ap.add_argument("--idle", type=float, default=3600.0)
    serve(ap.parse_args().idle)


if __name__ == "__main__":
    _main()
