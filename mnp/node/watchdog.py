"""The node's watchdog: no rank outlives its agent, and no job file stays in /dev/shm after it.

Ranks run in their own sessions (the agent starts each with ``setsid``), so nothing ties them to the agent: an agent
killed outright (SIGKILL, the OOM killer, a crash, a write to a closed SSH stderr) would leave them running and
MPICH's segment in /dev/shm. The agent therefore starts, first thing, a small supervisor that outlives it::

    agent                                   watchdog (forked, or python -m mnp.node.watchdog; own session)
      Watchdog.start()  --- pipe ------->   reads lines; holds the only read end
      .add_group(pgid)      "group 4711"    remembers the rank's process group (= its session: pgid == sid)
      .add_shm(kvsname)     "shm kvs_..."   remembers the job's PMI kvsname (MPICH names its segments after it)
      .add_dir(path)        "dir /tmp/..."  remembers a private directory of the agent's
      .close()              "close"         clean exit: the watchdog leaves at once and touches nothing
      (agent dies)          EOF             SIGTERM to every recorded group and to every other process of those
                                            sessions, SIGKILL after ``grace`` seconds, then the job's /dev/shm
                                            files (:func:`mnp.fabric.shm.remove_job_segments`) and the directories
                                            are removed; one line on stderr says what was done

The write end exists only in the agent (pipes are close-on-exec; ranks are spawned with ``close_fds``), so EOF
means the agent is gone, whatever killed it. The agent starts it before it has any other thread (before its ZeroMQ
context), so it is forked: no second interpreter to start, and it keeps none of the agent's descriptors (stdin and
stdout are /dev/null, stderr the agent's, the pipe). A process that already has threads exec's it fresh instead.
It ignores SIGHUP and SIGINT, and drops groups that have emptied (checked once a second), so a number the kernel
hands out again later is never signalled.

A pool agent is its forked agents' watchdog instead (:meth:`Watchdog.inherited`: the same lines on a pipe it reads;
it is their subreaper, so what an agent leaves becomes its child), and the init of a node's PID namespace needs none
(the kernel ends the namespace with it): see ``mnp.node.agent._guard`` and :mod:`mnp.node.poold`.

:func:`die_with_parent` is the other half, for processes the agent spawns directly: a ``preexec_fn`` that sets
``PR_SET_PDEATHSIG`` so the kernel kills the child the moment the spawning *thread* ends (call Popen from the
agent's main thread). It covers only that child, not what it starts; the watchdog covers the group and /dev/shm.

This module is imported on every node: standard library only, and nothing heavy at import time.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable

__all__ = ["Watchdog", "GuardState", "die_with_parent", "stop_all", "members", "main"]

PR_SET_PDEATHSIG = 1
_PRUNE_S = 1.0  # how often recorded groups are checked for having emptied


class Watchdog:
    """The agent's handle on its watchdog process. Every method is best effort: a watchdog that is gone (killed on
    its own) costs the agent its safety net, never the job."""

    def __init__(self, pid: int | None, fd: int, proc: subprocess.Popen[bytes] | None = None,
                 token: str = "") -> None:
        self.pid = pid  # None: the reader is the process that forked the agent (:meth:`inherited`)
        self._fd: int | None = fd
        self._proc = proc
        self.token = token  # (inherited) the mark the agent sets in its processes' environment

    @classmethod
    def inherited(cls, fd: int, token: str) -> Watchdog:
        """The write end of a pipe whose reader is an ancestor of this process that is also its children's
        subreaper (a pool agent): the same lines, no process of our own. Since whatever this process leaves behind
        is reparented to that reader, the children need not tell their groups themselves;
        ``token`` goes into their environment, so the reader knows them for this agent's."""
        os.set_inheritable(fd, False)
        return cls(None, fd, token=token)

    @classmethod
    def start(cls, shm_dir: str = "/dev/shm", grace: float = 2.0, quiet: bool = False) -> Watchdog:
        """Start the watchdog; it lives until :meth:`close` or until this process is gone. ``quiet``: its stderr
        is /dev/null instead of ours. Raises OSError when it cannot be started.

        A process with a single thread forks it (no second interpreter to start: the agent's start-up is launch
        time on every node); one with more threads (pyzmq's I/O thread, anything else) exec's it fresh, since a
        fork would copy them half-way."""
        read_fd, write_fd = os.pipe()  # both close-on-exec: only the watchdog gets the read end, below
        try:
            if _single_threaded():
                return cls(_fork(read_fd, shm_dir, grace, quiet), write_fd)
            proc = subprocess.Popen(
                [sys.executable, "-m", "mnp.node.watchdog", str(read_fd), shm_dir, repr(float(grace)),
                 str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL if quiet else None,
                pass_fds=(read_fd,), close_fds=True, start_new_session=True)
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        return cls(proc.pid, write_fd, proc)

    def _send(self, line: str) -> None:
        if self._fd is None:
            return
        if "\n" in line:
            raise ValueError(f"watchdog message with a newline: {line!r}")
        try:
            os.write(self._fd, line.encode() + b"\n")  # short lines: one atomic write to a pipe
        except OSError:  # the watchdog is gone: keep the job running without it
            os.close(self._fd)
            self._fd = None

    def add_group(self, pgid: int) -> None:
        """A process group to stop if the agent dies: a rank started with ``setsid`` (its pid), or anything else
        the agent runs in its own group. Processes of the session of the same id are stopped too."""
        self._send(f"group {int(pgid)}")

    def register_self(self) -> Callable[[], None]:
        """A ``preexec_fn`` part for a child started in a session of its own: it tells the watchdog its own group
        itself, before it execs, so a rank that kills its agent at once (before :meth:`add_group` is written) is
        stopped all the same. The child writes one short line on the pipe it inherits until exec (atomic, as the
        agent's own lines are)."""
        fd = self._fd

        def register() -> None:
            if fd is not None:
                try:
                    os.write(fd, f"group {os.getpid()}\n".encode())
                except OSError:
                    pass

        return register

    def add_shm(self, kvsname: str) -> None:
        """A job's PMI kvsname: its MPICH segments in /dev/shm are removed if the agent dies."""
        if not kvsname or any(c.isspace() for c in kvsname):
            raise ValueError(f"kvsname {kvsname!r}: empty or with white space")
        self._send(f"shm {kvsname}")

    def add_dir(self, path: str) -> None:
        """A directory of the agent's own (its private temporary directory) to remove if the agent dies."""
        self._send(f"dir {os.path.abspath(path)}")

    def close(self, wait: float = 1.0) -> None:
        """The agent ends cleanly: the watchdog exits without touching anything. Waits up to ``wait`` seconds for
        it (so it is reaped here and not left as a zombie of ours)."""
        self._send("close")
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.pid is None:
            return
        if self._proc is not None:
            try:
                self._proc.wait(wait)
            except subprocess.TimeoutExpired:
                pass
            return
        deadline = time.monotonic() + wait
        while True:  # a forked watchdog is our child: reap it
            try:
                if os.waitpid(self.pid, os.WNOHANG)[0] or time.monotonic() >= deadline:
                    return
            except ChildProcessError:  # reaped already (an agent reaps every child it has)
                return
            time.sleep(0.005)


def _single_threaded() -> bool:
    """Whether this process has one thread, C threads included (Python's ``threading`` sees only its own)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _name(name: bytes) -> None:
    """This process's command name (``/proc/PID/comm``), best effort."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(15, name[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _fork(read_fd: int, shm_dir: str, grace: float, quiet: bool) -> int:
    """Fork the watchdog: its own session, /dev/null for stdin and stdout (and stderr when ``quiet``), and of this
    process's descriptors only ``read_fd`` and stderr; then :func:`serve` and exit, never returning here."""
    agent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:  # pragma: no cover - the child (tests see it from outside)
        import gc

        gc.disable()  # no finalizer of the agent's objects may close a descriptor number this process reuses
        os.setsid()
        _name(b"mnp-watchdog")  # a fork shows the agent's command line: ps -o comm, pgrep tell them apart
        signal.set_wakeup_fd(-1)
        for s in (signal.SIGTERM, signal.SIGCHLD, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM):
            signal.signal(s, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        if quiet:
            os.dup2(null, 2)
        keep = {0, 1, 2, read_fd}
        for fd in [int(f) for f in os.listdir("/proc/self/fd")]:
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        code = serve(read_fd, shm_dir, grace, agent)
    finally:
        os._exit(code)


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn`` for :class:`subprocess.Popen`: the child gets ``sig`` when the thread that spawned it ends.

    libc is loaded here, in the parent, so the child runs no more than one ``prctl`` and a ``getppid`` between fork
    and exec. A parent that died between the fork and the ``prctl`` is caught by the ``getppid`` check.
    """
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # orphaned already: the signal will never come
            os.kill(os.getpid(), sig)

    return preexec


# -- the watchdog process ------------------------------------------------------------------------------------------
def _stat(pid: str) -> tuple[str, int, int] | None:
    """(state, pgid, sid) of a process from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()  # the command name may hold spaces and parentheses
    return fields[0].decode(), int(fields[2]), int(fields[3])


def members(groups: Iterable[int]) -> list[int]:
    """Live (not zombie) processes whose process group or session is one of ``groups``, this process excluded."""
    wanted = set(groups)
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        st = _stat(name)
        if st is not None and st[0] not in ("Z", "X") and (st[1] in wanted or st[2] in wanted):
            found.append(int(name))
    return found


def ids_in_use() -> set[int]:
    """Every process group and session that a live (not zombie) process is in, from one pass over /proc."""
    found: set[int] = set()
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(name)) is not None and st[0] not in ("Z", "X"):
            found.update(st[1:])
    return found


def _signal(groups: Iterable[int], pids: Iterable[int], sig: int) -> None:
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
        except OSError:  # gone, or never a group
            pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


class GuardState:
    """What a watchdog has heard from its agent: the groups, /dev/shm names and directories to clean up if the
    agent dies, and whether it closed (ended cleanly). :meth:`feed` takes the pipe's bytes as they come."""

    def __init__(self) -> None:
        self.groups: set[int] = set()
        self.kvsnames: list[str] = []
        self.dirs: list[str] = []
        self.closed = False
        self._buf = b""
        self._skip = False  # in the rest of an over-long line

    def feed(self, data: bytes) -> None:
        *lines, buf = (self._buf + data).split(b"\n")
        for line in lines:
            if not self._skip:
                self.handle(line.decode(errors="replace"))
            self._skip = False
        self._buf = buf
        if len(self._buf) > 4096:  # no line of ours is this long: drop it, up to its end, rather than grow
            self._buf, self._skip = b"", True

    def prune(self) -> None:
        """Forget the groups that have emptied, before the kernel can hand their numbers out again (call it about
        once a second). A group whose leader is gone is looked for among every process's group and session, in one
        pass over /proc for all of them."""
        gone = set()
        for g in self.groups:
            try:
                os.killpg(g, 0)
            except ProcessLookupError:
                gone.add(g)
            except PermissionError:
                pass
        if gone:
            self.groups -= gone - ids_in_use()

    def handle(self, line: str) -> None:
        word, _, arg = line.strip().partition(" ")
        if word == "group" and arg.isdigit() and int(arg) > 1:
            self.groups.add(int(arg))
        elif word == "shm" and arg:
            self.kvsnames.append(arg)
        elif word == "dir" and arg.startswith("/"):
            self.dirs.append(arg)
        elif word == "close":
            self.closed = True


def stop_all(state: GuardState, shm_dir: str, grace: float) -> str:
    """The agent is gone: stop its ranks (TERM, then KILL after ``grace``), remove its files. Returns a summary."""
    import shutil

    targets = sorted(state.groups)
    live = members(targets)
    seen = set(live) | set(targets)  # every rank pid: libfabric names its shm files after them
    _signal(targets, live, signal.SIGTERM)  # each process too: those that moved to another group of the session
    deadline = time.monotonic() + grace
    while (left := members(targets)) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = 0
    if left:
        seen.update(left)
        killed = len(left)
        _signal(targets, left, signal.SIGKILL)
        deadline = time.monotonic() + 2.0
        while members(targets) and time.monotonic() < deadline:
            time.sleep(0.02)
    removed: list[str] = []
    problems: list[str] = []
    if state.kvsnames or seen:
        try:
            from mnp.fabric.shm import remove_job_segments

            removed = [p.name for p in remove_job_segments(shm_dir, state.kvsnames, pids=seen)]
        except Exception as e:  # noqa: BLE001 - report and go on: the processes are what matters most
            problems.append(str(e))
    for d in state.dirs:
        shutil.rmtree(d, ignore_errors=True)
    still = members(targets)
    text = (f"stopped {len(targets)} rank group(s)" + (f" ({killed} process(es) needed SIGKILL)" if killed else "")
            + f", removed {len(removed)} file(s) from {shm_dir}")
    if still:
        text += f"; {len(still)} process(es) would not die: {', '.join(map(str, still[:8]))}"
    if problems:
        text += "; " + "; ".join(problems)
    return text


def serve(fd: int, shm_dir: str, grace: float, agent: int | None = None) -> int:
    """Read the agent's lines from ``fd`` until ``close`` (return 0) or EOF (stop everything, return 1)."""
    for s in (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE):
        signal.signal(s, signal.SIG_IGN)
    state = GuardState()
    next_prune = time.monotonic() + _PRUNE_S
    while True:
        ready, _, _ = select.select([fd], [], [], _PRUNE_S)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                break
            state.feed(data)
            if state.closed:
                return 0
        if time.monotonic() >= next_prune:  # a group that emptied is forgotten before its number can come back
            state.prune()
            next_prune = time.monotonic() + _PRUNE_S
    summary = stop_all(state, shm_dir, grace)
    who = f"agent {agent}" if agent else "the agent"
    try:
        sys.stderr.write(f"mnp watchdog: {who} ended without closing: {summary}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # its stderr (an SSH session) may be gone with it
        pass
    return 1


def main(argv: list[str] | None = None) -> int:
    """``python -m mnp.node.watchdog FD SHM_DIR GRACE [AGENT_PID]``, as :meth:`Watchdog.start` runs it."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (3, 4):
        sys.stderr.write("usage: python -m mnp.node.watchdog FD SHM_DIR GRACE [AGENT_PID]\n")
        return 2
    return serve(int(args[0]), args[1], float(args[2]), int(args[3]) if len(args) == 4 else None)


if __name__ == "__main__":
    sys.exit(main())
