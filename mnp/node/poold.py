"""A host's pool agent (``mnp pool start``): an agent that stays between jobs and forks each job's agent.

Started by :mod:`mnp.cluster.ssh_task` after the usual preflight (Python, mnp, MPI: the same checks as a job's),
when its handoff line asks for a pool instead of a job. It detaches from the SSH session (its own session, stdio
away from the channel), binds a CURVE ROUTER on a free port of every address, and says ``MNP-POOL {port,
public key}`` on the channel before the session ends. From then on it hears only the client key that
started it (ZAP, answered in its own loop), and for each :class:`~mnp.control.pool.Run` forks the job's agent
from itself: the interpreter and every module the agent needs are loaded already, so a job's node costs a fork
instead of an SSH session, a login shell and an interpreter start.

What it decides lives in :class:`PoolEngine` (no I/O: requests, agent exits, signals and the clock in, replies and
actions out); :class:`PoolDaemon` wires it to the socket, ``fork`` and ``waitpid``.

It ends on ``Stop``, SIGTERM/SIGINT/SIGHUP (its agents are told to stop first, and killed 10 s later), or after
``idle_s`` with no request and no agent. The jobs' agents are its children and die with it (``PR_SET_PDEATHSIG``).

It is also its agents' watchdog. Each forked agent runs in a session of its own and writes the watchdog's lines
(:class:`~mnp.node.watchdog.Watchdog`: its ranks' groups, the job's /dev/shm names, its private directory, and
``close`` when it ends cleanly) on a pipe that this process reads. The pool agent is the *subreaper* of everything
below it (``PR_SET_CHILD_SUBREAPER``), so what an agent leaves when it dies -- its ranks, even one started an
instant before -- becomes this process's child. An agent that ended without ``close`` is cleaned up after by a
forked helper: the groups it told, every orphan that carries its mark (``MNP_POOL_AGENT`` in the environment of
whatever it starts), and the files; never what a live agent told. So a job's agent
forks no watchdog of its own and its ranks need no step between fork and exec (Python spawns them with ``vfork``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from mnp.control import pool as p
from mnp.node.watchdog import GuardState

__all__ = ["PoolEngine", "Reply", "Fork", "SignalAgents", "Cleanup", "Exit", "start", "main", "TAG", "STOP_GRACE_S",
           "FIRST_CONTACT_S"]

TAG = "MNP-POOL"
#: after Stop (or SIGTERM) the agents have this long to stop their ranks before they are killed
STOP_GRACE_S = 10.0
#: a pool agent its client never reached (mnp pool start failed or was stopped half-way, a firewall, a proxy) exits
#: after this long, instead of staying unknown to any pool file until its idle time
FIRST_CONTACT_S = 30.0
#: Kills kept for agents not forked yet (a Run and its Kill read in one batch); more are not remembered
MAX_PENDING_KILLS = 1024
#: requests handled per pass of the loop: a flood cannot keep ZAP, signals and reaping waiting
BATCH = 64


# -- the engine: what to do, no I/O ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    to: bytes  # the client's routing id
    msg: p.FromPool


@dataclass(frozen=True)
class Fork:
    to: bytes
    node: int
    handoff: dict[str, Any]


@dataclass(frozen=True)
class SignalAgents:
    pids: tuple[int, ...]
    sig: int


@dataclass(frozen=True)
class Cleanup:
    """An agent ended without ``close``: stop what it leaves (the groups it told, and the orphans that carry its
    ``token``, never what belongs to a live agent: ``keep``, their groups and sessions) and remove its files."""
    pid: int
    state: GuardState
    keep: frozenset[int]
    token: str = ""  # the mark in its processes' environment (``MNP_POOL_AGENT``)


@dataclass(frozen=True)
class Exit:
    code: int
    why: str


Action = Reply | Fork | SignalAgents | Cleanup | Exit


@dataclass
class PoolEngine:
    idle_s: float
    last: float  # the last request, or the last agent's end: the idle clock starts there
    facts: dict[str, Any]  # hostname, python, mnp, mpi (the preflight's)
    started: float = field(default_factory=time.time)
    agents: dict[int, tuple[bytes, int]] = field(default_factory=dict)  # pid -> (client, node)
    guards: dict[int, GuardState] = field(default_factory=dict)  # pid -> what that agent told its watchdog
    marks: dict[int, str] = field(default_factory=dict)  # pid -> the token in that agent's processes' environment
    served: int = 0  # agents forked so far
    kill_on_fork: set[tuple[bytes, int]] = field(default_factory=set)  # Kills that came before their agent's fork
    stopping_since: float | None = None
    killed: bool = False
    contacted: bool = False  # a request came: its client can reach it (else it exits after FIRST_CONTACT_S)
    born: float | None = None  # the monotonic clock at its start (None: ``last``)

    def on_request(self, to: bytes, msg: p.ToPool | str, now: float) -> list[Action]:
        self.contacted = True
        if isinstance(msg, str):
            return [Reply(to, p.Refused(f"not a pool request: {msg}"))]
        if not isinstance(msg, p.Ping):
            self.last = now  # a job's work keeps it; a status query (Ping) does not
        if isinstance(msg, p.Ping):
            f = self.facts
            return [Reply(to, p.Ready(str(f.get("hostname", "")), str(f.get("python", "")), str(f.get("mnp", "")),
                                      str(f.get("mpi", "")), int(f.get("pid", 0)), len(self.agents), self.idle_s,
                                      self.started, self.served))]
        if isinstance(msg, p.Stop):
            return [Reply(to, p.Stopping(len(self.agents))), *self._stop(now, "stopped by mnp pool stop")]
        if isinstance(msg, p.Kill):
            pids = tuple(pid for pid, (c, n) in self.agents.items() if c == to and n == msg.node)
            if not pids and len(self.kill_on_fork) < MAX_PENDING_KILLS:
                self.kill_on_fork.add((to, msg.node))  # its Run is in the same batch, not forked yet
            return [SignalAgents(pids, signal.SIGTERM)]
        if self.stopping_since is not None:
            return [Reply(to, p.Refused("the pool agent is stopping", msg.node))]
        if msg.node < 0 or msg.handoff.get("node") != msg.node:
            return [Reply(to, p.Refused(f"run: the handoff is not node {msg.node}'s", msg.node))]
        if any(c == to and n == msg.node for c, n in self.agents.values()):
            return [Reply(to, p.Refused(f"run: node {msg.node}'s agent runs already", msg.node))]
        return [Fork(to, msg.node, msg.handoff)]

    def forked(self, to: bytes, node: int, pid: int, mark: str = "") -> list[Action]:
        self.agents[pid] = (to, node)
        self.guards[pid] = GuardState()
        self.marks[pid] = mark
        self.served += 1
        self.contacted = True
        out: list[Action] = [Reply(to, p.Running(node, pid))]
        if (to, node) in self.kill_on_fork:  # told to stop before it existed (a Run given up on, then a Kill)
            self.kill_on_fork.discard((to, node))
            out.append(SignalAgents((pid,), signal.SIGTERM))
        return out

    def fork_failed(self, to: bytes, node: int, error: str) -> list[Action]:
        return [Reply(to, p.Refused(f"run: could not fork the agent: {error}", node))]

    def on_guard(self, pid: int, data: bytes) -> None:
        """Bytes an agent wrote on its watchdog pipe."""
        if pid in self.guards:
            self.guards[pid].feed(data)

    def on_exit(self, pid: int, status: int, now: float) -> list[Action]:
        if pid not in self.agents:
            return []  # not a job's agent (a helper it forked, or a process orphaned under it)
        to, node = self.agents.pop(pid)
        guard, mark = self.guards.pop(pid, GuardState()), self.marks.pop(pid, "")
        self.last = now
        out: list[Action] = [Reply(to, p.Ended(node, pid, status))]
        if not guard.closed:
            keep = frozenset(self.agents).union(*(g.groups for g in self.guards.values()))
            out.append(Cleanup(pid, guard, keep, mark))
        if self.stopping_since is not None and not self.agents:
            out.append(Exit(0, "stopped"))
        return out

    def on_signal(self, sig: int, now: float) -> list[Action]:
        return self._stop(now, f"signal {sig}")

    def _stop(self, now: float, why: str) -> list[Action]:
        if self.stopping_since is None:
            self.stopping_since = now
        if not self.agents:
            return [Exit(0, why)]
        return [SignalAgents(tuple(self.agents), signal.SIGTERM)]

    def on_tick(self, now: float) -> list[Action]:
        if self.stopping_since is not None:
            if not self.agents:
                return [Exit(0, "stopped")]
            if not self.killed and now - self.stopping_since >= STOP_GRACE_S:
                self.killed = True
                return [SignalAgents(tuple(self.agents), signal.SIGKILL)]
            if now - self.stopping_since >= STOP_GRACE_S + 5:
                return [Exit(1, "agents did not end after SIGKILL")]
            return []
        if not self.contacted and now - (self.last if self.born is None else self.born) >= FIRST_CONTACT_S:
            return [Exit(0, f"never reached by its client within {FIRST_CONTACT_S:g} s")]
        if not self.agents and now - self.last >= self.idle_s:
            return [Exit(0, f"idle for {self.idle_s:g} s")]
        return []


# -- the driver ----------------------------------------------------------------------------------------------------
PR_SET_PDEATHSIG, PR_SET_NAME, PR_SET_CHILD_SUBREAPER = 1, 15, 36
GUARD_FD = 3  # a forked agent's end of its watchdog pipe


def _prctl(option: int, arg: int | bytes) -> None:
    """``prctl(option, arg)``, best effort."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(option, arg, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _name_process(name: bytes) -> None:
    """This process's name as ``ps -o comm`` shows it (PR_SET_NAME); best effort."""
    _prctl(PR_SET_NAME, name[:15])


def _children() -> list[int]:
    """This process's children, from the kernel's lists (each thread's: an orphan comes to any of them), or from
    every process's parent where the kernel keeps no such lists (``CONFIG_PROC_CHILDREN``)."""
    found: list[int] = []
    try:
        tids = os.listdir("/proc/self/task")
        for tid in tids:
            with open(f"/proc/self/task/{tid}/children") as f:
                found += [int(x) for x in f.read().split()]
        return found
    except FileNotFoundError:
        pass
    except OSError:
        return found
    me = os.getpid()
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
            if name.isdigit() and int(data[data.rindex(b")") + 2:].split()[1]) == me:
                found.append(int(name))
        except (OSError, ValueError, IndexError):
            pass
    return found

def _warm() -> None:
    """What a job's agent would import on its way (telemetry, the control tree's relay, a launcher's checks):
    loaded once here, shared by every fork; then every object so far is frozen out of the garbage collector, whose
    passes in a forked agent would otherwise touch, and so copy, the pages they live on."""
    import gc

    import psutil  # noqa: F401

    from mnp.cluster import cpus  # noqa: F401
    from mnp.control import tree  # noqa: F401
    from mnp.fabric import efa, ifaces, netlink, shm  # noqa: F401 - the hello's node facts
    from mnp.node import agent, treerelay  # noqa: F401

    gc.collect()
    gc.freeze()


class PoolDaemon:
    def __init__(self, client_public: str, idle_s: float, facts: dict[str, Any]) -> None:
        import zmq

        from mnp.control.zap import ENDPOINT

        self.zmq = zmq
        self.client_public = client_public
        _name_process(b"mnp-pool")  # `ps -o comm`, top: a pool agent is not a job's agent
        _prctl(PR_SET_CHILD_SUBREAPER, 1)  # what a job's agent leaves when it dies comes to us (see the top)
        self.guard_fds: dict[int, int] = {}  # read end of an agent's watchdog pipe -> its pid
        self.helpers: set[int] = set()  # forked clean-ups, not yet reaped
        self.next_prune = 0.0
        self.ctx = zmq.Context()
        self.zap = self.ctx.socket(zmq.REP)  # answered in this loop: no thread here, so the forks are clean
        self.zap.linger = 0
        self.zap.bind(ENDPOINT)
        self.public, secret = zmq.curve_keypair()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.curve_server = True
        self.sock.curve_publickey = self.public
        self.sock.curve_secretkey = secret
        self.sock.zap_domain = b"mnp-pool"
        self.sock.maxmsgsize = p.MAX_FRAME  # a larger frame is dropped by ZeroMQ before it takes memory here
        self.sock.bind("tcp://*:0")
        self.port = int(bytes(self.sock.last_endpoint).decode().rsplit(":", 1)[1])  # type: ignore[arg-type]
        now = time.monotonic()
        self.engine = PoolEngine(idle_s, now, {**facts, "pid": os.getpid()}, born=now)
        self.signals: list[int] = []
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, lambda signum, _f: self.signals.append(signum))

    def run(self) -> int:
        from mnp.control.zap import reply

        zmq = self.zmq
        self.poller = poller = zmq.Poller()
        for s in (self.sock, self.zap, self._wake_r):
            poller.register(s, zmq.POLLIN)
        while True:
            ready = dict(poller.poll(1000))
            now = time.monotonic()
            actions: list[Action] = []
            for fd in [f for f in ready if isinstance(f, int) and f in self.guard_fds]:
                self._read_guard(fd)
            if self.zap in ready:
                self.zap.send_multipart(reply(self.zap.recv_multipart(),
                                              lambda key: "client" if key.decode() == self.client_public else None))
            if self.sock in ready:
                for _ in range(BATCH):
                    try:
                        frames = self.sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    try:
                        if len(frames) == 2:
                            actions += self.engine.on_request(frames[0], p.decode_to_pool(frames[1]), now)
                        else:
                            actions.append(Reply(frames[0], p.Refused(f"{len(frames) - 1} frames: one request a "
                                                                      "message")))
                    except Exception as e:  # noqa: BLE001 - one request's problem is its answer, never our end
                        import traceback

                        traceback.print_exc()
                        actions.append(Reply(frames[0], p.Refused(f"could not handle it: {type(e).__name__}")))
            if self._wake_r in ready:
                try:
                    while os.read(self._wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            while self.signals:
                actions += self.engine.on_signal(self.signals.pop(), now)
            actions += self._reap(now)
            actions += self.engine.on_tick(now)
            if now >= self.next_prune:  # a group that emptied is forgotten before its number can come back
                for guard in self.engine.guards.values():
                    guard.prune()
                self.next_prune = now + 1.0
            for a in actions:
                if (code := self._act(a)) is not None:
                    self._close()
                    return code

    def _reap(self, now: float) -> list[Action]:
        out: list[Action] = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return out
            if pid == 0:
                return out
            self.helpers.discard(pid)
            for fd, agent in list(self.guard_fds.items()):  # all it wrote is in its pipe: read before judging its
                self._read_guard(fd, to_end=agent == pid)  # end; the others' too, since their groups are spared
            code = os.waitstatus_to_exitcode(status)
            out += self.engine.on_exit(pid, code if code >= 0 else 128 - code, now)

    def _read_guard(self, fd: int, to_end: bool = False) -> None:
        """Read an agent's watchdog pipe; at its end (the agent closed it, or is gone), forget it."""
        pid = self.guard_fds[fd]
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                if not to_end:
                    return
                data = b""  # the agent is reaped: no writer is left, so nothing more can come
            except OSError:
                data = b""
            if not data:
                self.poller.unregister(fd)
                os.close(fd)
                del self.guard_fds[fd]
                return
            self.engine.on_guard(pid, data)

    def _act(self, a: Action) -> int | None:
        if isinstance(a, Reply):
            try:
                self.sock.send_multipart([a.to, p.encode(a.msg)], self.zmq.NOBLOCK)
            except self.zmq.ZMQError:
                pass  # that client is gone (or not reading): its job's agents end with its job
        elif isinstance(a, Fork):
            token = os.urandom(8).hex()  # the mark of this agent's processes
            try:
                pid = self._fork_agent(a.handoff, token)
            except OSError as e:
                for b in self.engine.fork_failed(a.to, a.node, str(e)):
                    self._act(b)
                return None
            for b in self.engine.forked(a.to, a.node, pid, token):
                self._act(b)
        elif isinstance(a, Cleanup):
            self._clean_up(a)
        elif isinstance(a, SignalAgents):
            for pid in a.pids:
                try:
                    os.kill(pid, a.sig)
                except ProcessLookupError:
                    pass
        elif isinstance(a, Exit):
            if a.code:
                sys.stderr.write(f"mnp pool agent: exiting: {a.why}\n")
            return a.code
        return None

    def _clean_up(self, a: Cleanup) -> None:
        """Stop what a dead agent left and remove its files, in a forked helper (its grace period must not hold up
        this loop): the groups it told, and each of our children that is neither an agent nor a helper -- an
        orphan -- that carries the agent's mark in its environment (a rank it started an instant before it died,
        before it could tell its group). Nothing whose group or session belongs to a live agent, nor anything of
        ours."""
        from mnp.node.processes import AGENT_TOKEN_VAR
        from mnp.node.watchdog import stop_all

        mark = f"{AGENT_TOKEN_VAR}={a.token}".encode()
        for pid in _children() if a.token else []:
            if pid in self.engine.agents or pid in self.helpers:
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if mark not in f.read().split(b"\0"):
                        continue
                a.state.groups.update({os.getpgid(pid), os.getsid(pid)})
            except OSError:  # gone (a zombie, reaped at the next pass)
                continue
        a.state.groups -= {os.getpgid(0), os.getsid(0), 0, 1} | a.keep
        if not (a.state.groups or a.state.kvsnames or a.state.dirs):
            return
        try:
            pid = os.fork()
        except OSError as e:
            sys.stderr.write(f"mnp pool agent: agent {a.pid} ended without closing; no clean-up: {e}\n")
            return
        if pid:
            self.helpers.add(pid)
            return
        code = 1  # pragma: no cover - the helper
        try:
            import gc

            gc.disable()  # no finalizer of the pool agent's objects may run here (its sockets are not ours)
            _name_process(b"mnp-pool-clean")
            signal.set_wakeup_fd(-1)
            for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(s, signal.SIG_DFL)
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))
            summary = stop_all(a.state, "/dev/shm", 2.0)
            sys.stderr.write(f"mnp pool agent: agent {a.pid} ended without closing: {summary}\n")
            sys.stderr.flush()
            code = 0
        finally:
            os._exit(code)

    def _fork_agent(self, handoff: dict[str, Any], token: str) -> int:
        parent = os.getpid()
        guard_r, guard_w = os.pipe()
        try:
            pid = os.fork()
        except BaseException:
            os.close(guard_r)
            os.close(guard_w)
            raise
        if pid:
            os.close(guard_w)
            os.set_blocking(guard_r, False)
            self.guard_fds[guard_r] = pid
            self.poller.register(guard_r, self.zmq.POLLIN)
            return pid
        code = 70  # pragma: no cover - the child: this process's sockets and signal handling are not its own
        try:
            signal.set_wakeup_fd(-1)
            for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(s, signal.SIG_DFL)
            os.dup2(guard_w, GUARD_FD, inheritable=False)
            os.closerange(GUARD_FD + 1, os.sysconf("SC_OPEN_MAX"))  # the pool agent's sockets are not this agent's
            os.setsid()  # its own session: what it leaves is told apart from another job's by its session
            # the pool agent killed: this agent hears SIGTERM, stops its ranks and ends
            _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
            _name_process(b"mnp-agent")
            from mnp.node import agent
            from mnp.node.watchdog import Watchdog

            code = int(agent.Agent({**handoff, "watch_stdin": False, "stop_on_disconnect": True},
                                   guard=Watchdog.inherited(GUARD_FD, token)).run())
        except BaseException:  # noqa: BLE001 - said on stderr (the pool agent's log), then the exit status says it
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)  # never the pool agent's own finalizers: its sockets belong to its own ZeroMQ threads

    def _close(self) -> None:
        self.sock.close(0)
        self.zap.close(0)
        self.ctx.term()


def _open_log(hostname: str) -> tuple[int, str]:
    """A new file for a pool agent's stderr (its jobs' agents' warnings), 0600, a name no one can take first:
    ``$TMPDIR/mnp-pool-<uid>-<host>-<pid>-<random>.log``; removed at its end, kept after a failure."""
    return tempfile.mkstemp(prefix=f"mnp-pool-{os.getuid()}-{hostname}-{os.getpid()}-", suffix=".log")


def _stdio_to_log(hostname: str) -> str:
    """Stdin and stdout to /dev/null, stderr to a new log (:func:`_open_log`; stale ones removed first); its path."""
    _remove_stale_logs(hostname)
    null = os.open(os.devnull, os.O_RDWR)
    err, log = _open_log(hostname)
    for fd, to in ((0, null), (1, null), (2, err)):
        os.dup2(to, fd)
    os.close(null)
    os.close(err)
    return log


def _drop_log(log: str, code: int) -> None:
    """At the end: the log goes, unless a failure left something in it to say why."""
    try:
        if code == 0 or os.path.getsize(log) == 0:
            os.unlink(log)
    except OSError:
        pass


def _remove_stale_logs(hostname: str) -> None:
    """Logs of this host's pool agents that are gone without cleaning up (killed): a new one clears them."""
    import re

    pattern = re.compile(rf"mnp-pool-{os.getuid()}-{re.escape(hostname)}-(\d+)-\w+\.log")
    tmp = tempfile.gettempdir()
    for name in os.listdir(tmp):
        m = pattern.fullmatch(name)
        if m is None:
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            try:
                os.unlink(os.path.join(tmp, name))
            except OSError:
                pass
        except OSError:
            continue


def start(cfg: dict[str, Any], facts: dict[str, Any]) -> int:
    """Become this host's pool agent: called in the SSH session after the preflight, with the pool handoff. The
    session's process says ``MNP-POOL <JSON>`` (port, public key, pid) or ``MNP-POOL !<error>`` and exits; the
    pool agent goes on in a detached child."""
    client_public = str(cfg.get("client_public", ""))
    idle_s = float(cfg.get("idle_s", 3600))
    if len(client_public) != 40 or not idle_s > 0:
        sys.stdout.write(f"{TAG} !bad pool handoff\n")
        return 3
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        said = b""
        while chunk := os.read(r, 4096):
            said += chunk
        os.close(r)
        sys.stdout.write(f"{TAG} {said.decode(errors='replace') or '!the pool agent died at its start'}\n")
        sys.stdout.flush()
        return 0 if said.startswith(b"{") else 3
    code = 1  # pragma: no cover - the detached child
    hostname = str(facts.get("hostname") or socket.gethostname())
    log = ""
    try:
        os.close(r)
        os.setsid()  # the SSH session's end (its SIGHUP) is not ours
        log = _stdio_to_log(hostname)  # the session sees end of output once the parent exits: nothing here holds it
        _warm()
        daemon = PoolDaemon(client_public, idle_s, facts)
        os.write(w, json.dumps({"port": daemon.port, "public": daemon.public.decode(), "pid": os.getpid()}).encode())
        os.close(w)
        w = -1
        code = daemon.run()
    except BaseException as e:  # noqa: BLE001 - the session's process says it, if it still listens; the log too
        import traceback

        traceback.print_exc()
        if w >= 0:
            try:
                os.write(w, f"!{type(e).__name__}: {e}".encode())
            except OSError:
                pass
    finally:
        _drop_log(log, code)
        os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """A pool agent as a task of an ``srun`` step (``mnp pool start`` inside a Slurm allocation):
    ``python -m mnp.node.poold --client-public KEY [--idle S] [--toward ADDRESS]``.

    There is no SSH session to leave, so it stays in its task: Slurm tracks it and ends it with the allocation. It
    runs the same preflight as over SSH and says on stdout (srun labels the line with the task's id) ``MNP-POOL
    <JSON>``: the preflight's facts, this node's name and address (on the way to ``--toward``), and, when the
    preflight passed, its port and public key. Nothing secret crosses srun: the client's key is its public half.
    """
    import argparse

    from mnp.cluster.srun_task import node_name, scrub_environment
    from mnp.cluster.ssh_task import preflight

    ap = argparse.ArgumentParser(prog="python -m mnp.node.poold")
    ap.add_argument("--client-public", required=True)
    ap.add_argument("--idle", type=float, default=3600.0)
    ap.add_argument("--toward", help="an address of the client's host: this node reports its own on the way there")
    args = ap.parse_args(argv)
    name = node_name()
    facts: dict[str, Any] = {"python": f"{sys.version_info[0]}.{sys.version_info[1]}", "hostname": socket.gethostname(),
                             "node": name, "mnp": None, "mpi": None}
    agent = preflight(facts)
    from mnp.fabric.facts import address_toward

    address = address_toward(args.toward) if args.toward else None
    said: dict[str, Any] = {"facts": facts, "node": name, "address": address}
    if agent is None or facts["mpi"] is None or len(args.client_public) != 40 or not args.idle > 0:
        sys.stdout.write(f"{TAG} {json.dumps(said)}\n")
        return 3
    scrub_environment(os.environ)  # the step's variables are not the jobs' business (as for srun_task's agents)
    _warm()
    daemon = PoolDaemon(args.client_public, args.idle, facts)
    said.update(port=daemon.port, public=daemon.public.decode(), pid=os.getpid())
    sys.stdout.write(f"{TAG} {json.dumps(said)}\n")
    sys.stdout.flush()
    log = _stdio_to_log(name)
    code = 1
    try:
        code = daemon.run()
    finally:
        _drop_log(log, code)
    return code


if __name__ == "__main__":
    sys.exit(main())
