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
from collections.abc import Callable

__all__ = ["try_front", "front_path", "front_info", "ping_front", "start_front", "stop_front", "serve"]

SOCKET = "front.sock"
MAX_REQUEST = 4 << 20
REQUEST_S = 2.0  # a whole request's time to arrive
START_S = 30.0  # a front that has not started the job by then is stuck (stopped, swapped out): say so
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_LIMITS = ("RLIMIT_NOFILE", "RLIMIT_CORE", "RLIMIT_STACK", "RLIMIT_MEMLOCK", "RLIMIT_NPROC", "RLIMIT_AS",
           "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_CPU")


def _home() -> str:
    from mnp.home import home_dir

    return os.path.abspath(home_dir())  # (absolute: the front works from /)


def front_path() -> str:
    return os.path.join(_home(), SOCKET)


def _at(path: str, use: Callable[[str], None]) -> None:
    """``use`` (a socket's bind or connect) with ``path``, or, for a path longer than a socket address holds,
    with the same file through its directory's descriptor (``/proc/self/fd/N/front.sock``)."""
    if len(path.encode()) < 100:
        use(path)
        return
    d = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
    try:
        use(f"/proc/self/fd/{d}/{os.path.basename(path)}")
    finally:
        os.close(d)


def _connect(path: str, timeout: float | None = None) -> socket.socket:
    """A connection to the front's socket at ``path``, whose listener must be this user's."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(timeout)
    try:
        _at(path, s.connect)
        if _peer_uid(s) != os.geteuid():  # a socket someone else bound there (a shared MNP_HOME): never ours
            raise PermissionError(f"{path}: served by another user")
    except BaseException:
        s.close()
        raise
    return s


def _peer_uid(s: socket.socket) -> int | None:
    """The uid of the process at the other end of a connected Unix socket, from the kernel."""
    import struct

    try:
        _pid, uid, _gid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                           struct.calcsize("3i")))
    except OSError:
        return None
    return int(uid)


def _identity() -> dict[str, str]:
    """What must be the same on both sides: the interpreter, its environment (a venv), and the mnp package it
    runs, down to its files' last change (an edited checkout is another mnp)."""
    import mnp

    root = os.path.dirname(os.path.realpath(mnp.__file__))
    return {"version": mnp.__version__, "exe": os.path.realpath(sys.executable), "prefix": sys.prefix,
            "root": root, "changed": str(_newest(root))}


def _newest(root: str) -> int:
    """The newest modification time (ns) of the package's ``.py`` files (about 0.5 ms here): an edited or added
    module changes it; a directory's own time does not count (Python's ``__pycache__`` and editors' swap files
    change that)."""
    newest, stack = 0, [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    if e.name != "__pycache__":
                        stack.append(e.path)
                elif e.name.endswith(".py"):
                    newest = max(newest, e.stat(follow_symlinks=False).st_mtime_ns)
    return newest


def _fds(anc: list[tuple[int, int, bytes]]) -> list[int]:
    """The descriptors that came in ``recvmsg``'s ancillary data."""
    import array

    out: list[int] = []
    for level, kind, raw in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            got = array.array("i")
            got.frombytes(raw[:len(raw) - len(raw) % got.itemsize])
            out.extend(got)
    return out


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
    for fd in (0, 1, 2):  # a closed one gets /dev/null (before the socket could take its number)
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)
    try:
        s = _connect(front_path(), timeout=2.0)
    except (OSError, ValueError):  # none serves this home (or not for us)
        return
    try:
        frame = _frame(_request(argv))
    except (OSError, ValueError, TypeError):  # this process's state is unreadable (a deleted cwd, say)
        s.close()
        return
    try:
        _run_remote(s, frame, pending)
    finally:
        s.close()


def _request(argv: list[str]) -> dict[str, object]:
    """Everything of this process that the job's mnp must have: what ``fork`` and ``exec`` would have carried."""
    import resource

    limits = {}
    for name in _LIMITS:
        if hasattr(resource, name):
            limits[name] = list(resource.getrlimit(getattr(resource, name)))
    umask = os.umask(0)
    os.umask(umask)
    ignored = [int(n) for n in range(1, signal.NSIG) if _ignored(n)]
    return {"op": "run", **_identity(), "argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "umask": umask,
            "affinity": sorted(os.sched_getaffinity(0)), "limits": limits, "nice": os.getpriority(os.PRIO_PROCESS, 0),
            "path": [str(p) for p in sys.path], "ignored": ignored,
            "mask": sorted(int(n) for n in signal.pthread_sigmask(signal.SIG_BLOCK, []) if n not in FORWARDED),
            "stdio": [[f.encoding, f.errors] if f is not None else None for f in (sys.stdin, sys.stdout, sys.stderr)]}


def _ignored(signum: int) -> bool:
    try:
        return signal.getsignal(signum) is signal.SIG_IGN and signum != signal.SIGPIPE  # (Python's own)
    except (ValueError, OSError):
        return False


def _run_remote(s: socket.socket, frame: bytes, pending: list[int]) -> None:
    import array
    import resource

    try:
        n = s.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", (0, 1, 2)))])
        s.sendall(frame[n:])  # the descriptors went with the first bytes; the rest of a large request follows
    except OSError:
        return
    sent, child = 0, -1  # child: the job's mnp's pidfd, once it has said it started

    def forward() -> None:
        """Until the job's mnp has started, through the front (which holds it from the fork on); then straight
        to it through its pidfd, so that a front that died since cannot swallow a Ctrl-C."""
        nonlocal sent
        while sent < len(pending):
            sent += 1  # counted first: a signal handled inside sendall must not send this one again
            try:
                if child >= 0:
                    signal.pidfd_send_signal(child, pending[sent - 1])
                else:
                    s.sendall(b"sig %d\n" % pending[sent - 1])
            except OSError:
                pass

    def on_signal(signum: int, _frame: object) -> None:
        pending.append(signum)
        forward()

    for sig in FORWARDED:
        signal.signal(sig, on_signal)
    forward()
    buf, started = b"", False
    s.settimeout(START_S)
    ancsize = socket.CMSG_SPACE(array.array("i").itemsize)
    while True:
        try:
            chunk, anc, _flags, _addr = s.recvmsg(4096, ancsize, socket.MSG_CMSG_CLOEXEC)
            for fd in _fds(anc):
                if not started and child < 0:
                    child = fd  # (from the job's mnp, with its "started")
                else:
                    os.close(fd)
        except TimeoutError:
            sys.stderr.write(f"mnp: error: the pool's front ({front_path()}) did not start the job within "
                             f"{START_S:g} s (stopped? its log: front.log beside it); MNP_FRONT=0 runs without it\n")
            raise SystemExit(1) from None
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
                s.settimeout(None)
            elif word == "refused" and not started:
                return
            elif word == "exit" and arg.lstrip("-").isdigit():
                # the job is over: a Ctrl-C from now on must not kill this process as it exits (Python's own
                # finalization gives the signals their default action back), its status is the job's
                signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
                raise SystemExit(int(arg))
            elif word == "killed" and arg.isdigit():
                signum = int(arg)
                try:
                    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the job's core is its own, not this one's
                except (OSError, ValueError):
                    pass
                if signum not in (signal.SIGKILL, signal.SIGSTOP):
                    try:
                        signal.signal(signum, signal.SIG_DFL)
                    except (OSError, ValueError):
                        pass
                os.kill(os.getpid(), signum)  # the shell sees what the job's mnp died of
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

    from mnp.pids import pid_running

    ans = _ask("stop")
    if not ans or not ans.startswith("stopping "):
        return ans is None
    pid = int(ans.split()[1])
    deadline = time.monotonic() + wait_s
    while pid_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def start_front(idle_s: float) -> int | None:
    """A front for this home (the one answering, or a new one, detached); its pid, or None if it did not come up
    within 10 s (jobs then start without it)."""
    import subprocess
    import time

    pid = ping_front()
    if pid is not None:
        return pid
    import mnp

    log = os.path.join(_home(), "front.log")  # appended to: a front that is still going may be writing it
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    # -P: not this directory first on its path (a yaml.py or zmq.py here would be every job's); the mnp package
    # is found where this process found it, and nothing else there
    top = os.path.dirname(os.path.dirname(os.path.realpath(mnp.__file__)))
    try:
        subprocess.Popen([sys.executable, "-P", "-c", _BOOT, top, "--idle", repr(float(idle_s))],
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

_BOOT = ("import sys; top = sys.argv.pop(1); sys.path.insert(0, top); import mnp; sys.path.remove(top); "
         "from mnp.cli.front import _main; _main()")  # (mnp.cli.front: its name in ps)

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


def _read_request(sock: socket.socket) -> tuple[dict[str, object], list[int], bytes]:
    """One request, the descriptors that came with it (close-on-exec) and what the client sent after it (its
    first ``sig`` lines); within REQUEST_S in all, so a client that stalls holds the front that long at most. On
    any error the descriptors received so far are closed."""
    import array
    import json
    import time

    fds: list[int] = []
    data = b""
    deadline = time.monotonic() + REQUEST_S
    ancsize = socket.CMSG_SPACE(3 * array.array("i").itemsize)
    try:
        while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
            if len(data) >= 4 and int.from_bytes(data[:4], "big") > MAX_REQUEST:
                raise ValueError("request too large")
            left = deadline - time.monotonic()
            if left <= 0:
                raise ValueError("request too slow")
            sock.settimeout(left)
            chunk, anc, _flags, _addr = sock.recvmsg(1 << 16, ancsize if not fds else 0, socket.MSG_CMSG_CLOEXEC)
            fds.extend(_fds(anc))
            if not chunk:
                raise ValueError("the client hung up")
            data += chunk
        n = int.from_bytes(data[:4], "big")
        req = json.loads(data[4:4 + n])
        if not isinstance(req, dict):
            raise ValueError("not a request")
    except Exception:  # (RecursionError of a deeply nested document included)
        _close(fds)
        raise ValueError("a malformed request") from None
    sock.settimeout(None)
    return req, fds, data[4 + n:]


def _close(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()


def serve(idle_s: float) -> None:
    """The front's loop: one per home (a lock held for its life)."""
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
    os.environ["MNP_HOME"] = home  # (absolute, as this process works from /: its own reads of the pool file)
    os.chdir("/")  # (each job's mnp goes to its client's directory)
    for name in PRELOAD:
        importlib.import_module(name)
    me = _identity()  # (after the imports)
    import gc

    gc.collect()
    gc.freeze()  # what every child shares stays out of its collections (and its pages stay shared)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    tmp = f"{path}.{os.getpid()}"
    old = os.umask(0o177)
    try:
        if os.path.exists(tmp):
            os.unlink(tmp)
        _at(tmp, listener.bind)
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
    conns: dict[int, _Conn] = {}  # by socket fd: the clients whose job runs
    children: dict[int, _Conn] = {}
    last = time.monotonic()
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        if not children and (stopping or time.monotonic() - last > idle_s or not _pool_alive()):
            break
        for fd, _ev in poller.poll(1000):
            if fd == wake_r.fileno():
                try:
                    wake_r.recv(4096)
                except OSError:
                    pass
            elif fd == listener.fileno():
                last = time.monotonic()
                try:
                    sock, _ = listener.accept()
                except OSError:  # out of descriptors, say: not a loop that spins on a listener still readable
                    time.sleep(0.05)
                    continue
                if stopping or _peer_uid(sock) != os.geteuid():
                    sock.close()
                    continue
                conn = _Conn(sock)
                try:
                    req, fds, rest = _read_request(sock)
                except (OSError, ValueError):
                    sock.close()
                    continue
                try:
                    if any(req.get(k) != v for k, v in me.items()):
                        conn.say("refused stale: this front runs another mnp or Python")
                        sock.close()
                        if all(req.get(k) == me[k] for k in ("root", "exe", "prefix")):
                            stopping = True  # this mnp changed under it: the next pool start makes a current one
                    elif req.get("op") == "ping":
                        conn.say(f"pong {os.getpid()} {served}")
                        sock.close()
                    elif req.get("op") == "stop":
                        stopping = True
                        conn.say(f"stopping {os.getpid()}")
                        sock.close()
                    elif req.get("op") == "run" and len(fds) == 3 and _hung_up(sock):
                        sock.close()  # the client gave up (timed out, killed) while its request waited: no job
                    elif req.get("op") == "run" and len(fds) == 3:
                        pid = _fork(conn, req, fds, [listener, wake_r, wake_w, *(c.sock for c in conns.values())],
                                    lock)
                        if pid is None:
                            sock.close()
                        else:
                            conn.child, conn.buf = pid, rest
                            children[pid] = conns[sock.fileno()] = conn
                            poller.register(sock, select.POLLIN)
                            served += 1
                            _relay(conn, b"")  # the signals that came with the request
                    else:
                        conn.say("refused: not a request")
                        sock.close()
                finally:
                    _close(fds)
            elif fd in conns:
                conn = conns[fd]
                if not _relay(conn):
                    poller.unregister(fd)
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid not in children:
                continue
            conn = children.pop(pid)
            conn.say(f"killed {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else
                     f"exit {os.waitstatus_to_exitcode(status)}")
            if conns.pop(conn.sock.fileno(), None) is not None and conn.open:
                poller.unregister(conn.sock)
            conn.sock.close()
            last = time.monotonic()
    try:
        if os.stat(path).st_ino == ino:
            os.unlink(path)
    except OSError:
        pass


def _hung_up(sock: socket.socket) -> bool:
    import select

    p = select.poll()
    p.register(sock, select.POLLRDHUP)
    return any(ev & (select.POLLRDHUP | select.POLLHUP | select.POLLERR) for _fd, ev in p.poll(0))


def _fork(conn: _Conn, req: dict[str, object], fds: list[int], others: list[socket.socket], lock: int) -> int | None:
    """The job's mnp forked for ``conn`` (the forwarded signals blocked across the fork, so none reaches the
    child before it has its own handlers); None when the kernel refused (the client was told)."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        pid = os.fork()
    except OSError as e:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        conn.say(f"refused fork: {e.strerror}")
        return None
    if pid == 0:
        try:
            _child(conn, req, fds, others, lock)
        finally:
            os._exit(1)  # (it exits itself; nothing in it may return into the front's loop)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    return pid


def _pool_alive() -> bool:
    """The pool this front serves still has hosts (``mnp pool stop`` of all of them, or its home removed, ends
    the front; so does a pool file mnp would refuse)."""
    from mnp.cluster.pool import PoolStore
    from mnp.errors import UsageError

    try:
        return bool(PoolStore.load().hosts)
    except UsageError:
        return False


def _relay(conn: _Conn, chunk: bytes | None = None) -> bool:
    """The client's lines (``chunk``, else what its socket has): signals for its job's mnp; its hang-up is the
    job's SIGHUP. Whether the client is still connected."""
    if chunk is None:
        try:
            chunk = conn.sock.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            conn.open = False
            if conn.child is not None:
                _kill(conn.child, signal.SIGHUP)
            return False
    conn.buf += chunk
    while b"\n" in conn.buf:
        line, conn.buf = conn.buf.split(b"\n", 1)
        word, _, arg = line.partition(b" ")
        if word == b"sig" and arg.isdigit() and int(arg) in FORWARDED and conn.child is not None:
            _kill(conn.child, int(arg))
    if len(conn.buf) > 4096:
        conn.buf = b""
    return True


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
        for s in others:
            s.close()
        os.close(lock)
        _become(req, fds)
    except Exception as e:  # nothing ran: the client runs the job itself
        conn.say(f"refused {type(e).__name__}: {e}")
        os._exit(1)
    _started(conn)
    try:
        from mnp.cli.main import main

        main()
        code = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):  # (a bool too, as Python's own exit takes it)
            code = int(e.code or 0)
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


def _signals(req: dict[str, object]) -> None:
    """The client's ignored signals and signal mask (those the front had, from whoever started it, are not the
    job's); SIGINT, SIGTERM and SIGHUP stay caught and unblocked."""
    ignored = {int(n) for n in req.get("ignored") or () if isinstance(n, int)}  # type: ignore[attr-defined]
    for n in range(1, signal.NSIG):
        if n in FORWARDED or n in (signal.SIGCHLD, signal.SIGPIPE, signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            if n in ignored:
                signal.signal(n, signal.SIG_IGN)
            elif signal.getsignal(n) is signal.SIG_IGN:
                signal.signal(n, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    mask = {int(n) for n in req.get("mask") or () if isinstance(n, int)} - set(FORWARDED)  # type: ignore[attr-defined]
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _stdio(got: object) -> list[tuple[str, str]]:
    """The client's encoding and error handler for stdin, stdout and stderr (UTF-8 where it sent none valid)."""
    import codecs

    defaults = [("utf-8", "surrogateescape"), ("utf-8", "surrogateescape"), ("utf-8", "backslashreplace")]
    out = []
    for i, default in enumerate(defaults):
        pair = got[i] if isinstance(got, list) and len(got) == 3 else None
        try:
            if isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair):
                codecs.lookup(pair[0])
                codecs.lookup_error(pair[1])
                out.append((pair[0], pair[1]))
                continue
        except LookupError:
            pass
        out.append(default)
    return out


def _started(conn: _Conn) -> None:
    """``started PID``, with a pidfd of this process (the client signals it through that: no pid namespace or
    reused pid can misdirect it); the line alone where the kernel has no pidfds."""
    import array

    line = f"started {os.getpid()}\n".encode()
    try:
        pidfd = os.pidfd_open(os.getpid())
    except (OSError, AttributeError):
        conn.say(line.decode().rstrip("\n"))
        return
    try:
        conn.sock.sendmsg([line], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [pidfd]))])
    except OSError:
        pass
    finally:
        os.close(pidfd)


def _become(req: dict[str, object], fds: list[int]) -> None:
    import io
    import random
    import resource
    import tempfile
    import time

    env, argv, cwd, path = req["env"], req["argv"], req["cwd"], req.get("path")
    if not (isinstance(env, dict) and isinstance(argv, list) and isinstance(cwd, str) and isinstance(path, list)):
        raise ValueError("a malformed request")
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in env.items()})
    time.tzset()  # (TZ)
    sys.path[:] = [str(p) for p in path]  # what the job imports from now on is found where the client finds it
    os.chdir(cwd)
    _signals(req)
    # what this process cannot become (a higher priority, a CPU outside its cpuset, a limit above its hard
    # limit) is a refusal, before the descriptors are touched: the client then runs the job itself, as it is
    nice = int(req.get("nice", 0))  # type: ignore[call-overload]
    if os.getpriority(os.PRIO_PROCESS, 0) != nice:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    os.umask(int(req.get("umask", 0o022)))  # type: ignore[call-overload]
    aff = req.get("affinity")
    if isinstance(aff, list) and aff and set(aff) != os.sched_getaffinity(0):
        os.sched_setaffinity(0, [int(c) for c in aff])
    limits = req.get("limits")
    for name, pair in (limits.items() if isinstance(limits, dict) else ()):
        if name in _LIMITS and hasattr(resource, name) and isinstance(pair, list) and len(pair) == 2:
            want = (int(pair[0]), int(pair[1]))
            if resource.getrlimit(getattr(resource, name)) != want:
                resource.setrlimit(getattr(resource, name), want)
    for target, fd in zip((0, 1, 2), fds):
        os.dup2(fd, target)
        os.close(fd)
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    (in_enc, in_err), (out_enc, out_err), (err_enc, err_err) = _stdio(req.get("stdio"))
    sys.stdin = io.TextIOWrapper(open(0, "rb", closefd=False), encoding=in_enc, errors=in_err)
    sys.stdout = io.TextIOWrapper(open(1, "wb", closefd=False), encoding=out_enc, errors=out_err,
                                  line_buffering=os.isatty(1), write_through=unbuffered)
    sys.stderr = io.TextIOWrapper(open(2, "wb", closefd=False), encoding=err_enc, errors=err_err,
                                  line_buffering=True, write_through=unbuffered)
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
