"""The node agent's driver: ``python -m mnp.agent``, one per node, started by a cluster provider.

It reads its job handoff (coordinator endpoint, node index, CURVE keys) as one JSON line on stdin (or a pipe),
dials the coordinator, says hello, and wires :class:`~mnp.node.engine.NodeEngine` -- which decides everything --
to the world: the ZeroMQ channel, the ranks' processes, pipes and PMI sockets, signals, the launcher relays
(:mod:`mnp.node.relay`). On a local node it is the PID namespace's init, so it also reaps whatever is re-parented
to it and ends the node when it exits.

Secrets stay here: ``MNP_JOB_SECRET`` (AWS Batch) is removed from this process's environment at start, and no
rank, launcher or daemon gets it or any key of the job.

This module is imported by every node at start-up, so it stays light: no numba, no MPI, no Click.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import zmq

from mnp.control import messages as m
from mnp.control.channel import AgentChannel
from mnp.fabric.facts import address_toward, node_facts  # not mnp.fabric.decide (the coordinator's)
from mnp.fabric.shm import shm_free
from mnp.node import engine as e
from mnp.node.processes import SECRET_VARS, Processes, rank_environment
from mnp.node.telemetry import Sampler
from mnp.node.watchdog import Watchdog, die_with_parent

__all__ = ["main", "Agent", "rank_environment", "SECRET_VARS"]

log = logging.getLogger("mnp.agent")

def _guard(inherited: Watchdog | None, ns_init: bool, node: int) -> tuple[Watchdog | None, bool]:
    """The agent's watchdog, and whether an ancestor inherits what the agent leaves (see :meth:`Agent.child_preexec`).

    - a pool agent's fork: the pool agent reads the lines and is its jobs' subreaper;
    - the init of a node's PID namespace with its own /dev/shm (a local isolated node: ``ns_init`` in the
      handoff, and this process really is PID 1): the kernel kills every process of the namespace when its init
      ends, and the node's /dev/shm goes with its mount namespace, so no watchdog is needed at all;
    - otherwise a watchdog of its own, forked before the ZeroMQ context (and its thread) exists.
    """
    if inherited is not None:
        return inherited, True
    if os.getpid() == 1 and ns_init:
        return None, True
    try:
        return Watchdog.start(), False
    except OSError as err:
        log.warning("mnp agent %d: no watchdog (%s): ranks would outlive a killed agent", node, err)
        return None, False


class Agent:
    def __init__(self, handoff: dict[str, Any], guard: Watchdog | None = None) -> None:
        """``guard``: a watchdog that the process which forked this agent reads (:meth:`Watchdog.inherited`, a pool
        agent); without one the agent starts its own, unless it is the init of a node's PID namespace."""
        for var in SECRET_VARS:  # read once by whoever started us; never passed on
            os.environ.pop(var, None)
        self.node: int = int(handoff["node"])
        heartbeat = float(handoff.get("heartbeat_s", 1.0))
        dead = float(handoff.get("dead_s", 15.0))
        self.engine = e.NodeEngine(self.node, heartbeat, dead, float(handoff.get("first_contact_s", dead)),
                                   time.monotonic(), endpoint=handoff["endpoint"])
        self.endpoint: str = handoff["endpoint"]
        self.dialed: str | None = handoff.get("dialed")
        self.command: list[str] | None = handoff.get("command")  # this node's own rank command (AWS Batch)
        self.report_ifaces = bool(handoff.get("report_ifaces"))
        # nodes that share one /tmp: the private directory goes here, with a TMPDIR for the node's processes
        self.private_root: str | None = handoff.get("private_root")
        # ties the node's processes to this agent: they die with it, whatever it dies of
        self.watchdog, self.guarded = _guard(guard, bool(handoff.get("ns_init")), self.node)
        self.chan = AgentChannel(handoff["endpoint"], handoff)
        self.poller = zmq.Poller()
        self.poller.register(self.chan.sock, zmq.POLLIN)
        self.relay = self._relay(handoff)  # this node's children in the control tree dial it (None: a leaf)
        self.shutdown_seen = False
        self.handlers: dict[int, Any] = {}  # fd -> callback(fd): rank pipes, PMI sockets, the relays
        self.ps = Processes(self)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.poller.register(self._wake_r, zmq.POLLIN)
        # A provider that keeps our stdin open (SSH) means: end of stdin is the end of the session, stop.
        self.stdin_fd = sys.stdin.fileno() if handoff.get("watch_stdin") else None
        if self.stdin_fd is not None:
            self.poller.register(self.stdin_fd, zmq.POLLIN)
        # A provider with no session to close (a pool agent's fork): the end of the connection upward is that end.
        # The coordinator (or relay) process gone closes it at once; silence (a network cut) is still dead_s.
        self.monitor: Any = None
        self.disconnected = False
        if handoff.get("stop_on_disconnect"):
            self.monitor = self.chan.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            self.poller.register(self.monitor, zmq.POLLIN)
        self.signals: list[int] = []
        self.pdeathsig = die_with_parent()
        # CPU, memory and /dev/shm of the job's processes, once a second (None: telemetry off)
        self.sampler = Sampler.from_handoff(handoff, exclude=[self.watchdog.pid] if self.watchdog and
                                            self.watchdog.pid else [])
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a closed stderr (SSH gone) is no reason to die
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(s, lambda signum, _f: self.signals.append(signum))
        self.spawner: Any = None  # the children this relay starts itself over SSH (tree spawn)
        if self.relay is not None and handoff.get("spawn"):
            from mnp.node.spawner import Spawner

            self.spawner = Spawner(self, handoff["spawn"])

    def _relay(self, handoff: dict[str, Any]) -> Any:
        children = {int(c): k for c, k in (handoff.get("children") or {}).items()}
        if not children:
            return None
        from mnp.control.tree import Tree
        from mnp.node.treerelay import TreeRelay

        n, width = handoff["tree"]
        relay = TreeRelay(self.chan.ctx, Tree(int(n), int(width)), self.node, handoff["public"], handoff["secret"],
                          children, self._my_address() or "127.0.0.1", self.chan.send_frames,
                          lambda line: log.warning("mnp agent %d: %s", self.node, line), handoff.get("relay_port"))
        for sock in relay.sockets():
            self.poller.register(sock, zmq.POLLIN)
        return relay

    # -- the loop ----------------------------------------------------------------------------------------------
    def send(self, msg: m.ToCoordinator, data: bytes | None = None) -> None:
        if self.relay is None:
            self.chan.send(msg, data)
        else:  # through the relay: its barrier and heartbeat are merged with its subtree's
            self.relay.up([self.node], [m.encode(msg)] + ([data] if data is not None else []))

    def hello(self) -> None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cpus = os.cpu_count() or 1
        self.send(m.Hello(socket.gethostname(), cpus, os.getpid(), sys.version.split()[0], self._my_address(),
                          self.dialed, self.command, node_facts(self.report_ifaces),
                          self.relay.endpoint if self.relay is not None else None))

    def _my_address(self) -> str | None:
        """The address this node has on the way to the coordinator (no packet is sent)."""
        return address_toward(self.endpoint.rsplit(":", 1)[0].removeprefix("tcp://"))

    def child_preexec(self) -> Callable[[], None] | None:
        """What a process the agent starts in a session of its own (a rank, a named process, a remote exec) runs
        between fork and exec: it tells the watchdog its group itself, so a child that kills the agent at once is
        stopped all the same, and it dies when the agent's main thread does. None when the agent is guarded by an
        ancestor that inherits its orphans (a pool agent, or the kernel for a PID namespace's init): then the
        child needs no step of its own, and Python starts it with ``vfork`` instead of copying the agent."""
        if self.guarded:
            return None
        die = self.pdeathsig
        register = self.watchdog.register_self() if self.watchdog is not None else None
        if register is None:
            return die

        def preexec() -> None:
            register()  # before anything of the child's runs
            die()

        return preexec

    def run(self) -> int:
        self.hello()
        next_beat = 0.0
        while not self.engine.finished or self._still_relaying():
            self.act(self.engine.on_tick(time.monotonic()))
            if self.relay is not None and time.monotonic() >= next_beat:
                self.relay.beat()
                next_beat = time.monotonic() + self.engine.heartbeat_s
            if self.sampler is not None and (sample := self.sampler.poll(time.monotonic())) is not None:
                self.send(sample)
            while self.signals:
                self.act(self.engine.on_signal(self.signals.pop()))
            for sock, _ in self.poller.poll(timeout=int(min(self.engine.heartbeat_s, 0.5) * 1000)):
                if sock is self.chan.sock:
                    self._drain_control()
                elif sock == self._wake_r:
                    self._drain_wake()
                elif sock == self.stdin_fd:
                    self._read_stdin()
                elif sock is self.monitor and self.monitor is not None:
                    self._read_monitor()
                elif self.relay is not None and sock in self.relay.sockets():
                    self.relay.handle(sock)
                else:
                    handler = self.handlers.get(sock)
                    if handler is not None:
                        handler(sock)
            self.ps.reap()
            self.ps.named.expire(time.monotonic())
        removed = self.ps.close()
        if self.watchdog is not None:
            self.watchdog.close()
        if self.relay is not None:
            self.relay.beat()
            # the subtree's last words (their Byes) go up before this relay ends; deeper relays wait less, so
            # their own Byes reach their parents within the coordinator's wait (3 s)
            self._drain_children(2.5 / self.relay.tree.depth(self.node))
        use = resource.getrusage(resource.RUSAGE_SELF)
        self.send(m.Bye(use.ru_maxrss, removed, round(use.ru_utime + use.ru_stime, 4)))
        if self.spawner is not None:
            self.spawner.close()
        if self.relay is not None:
            self.relay.close()
        if self.monitor is not None:
            self.chan.sock.disable_monitor()
            self.monitor.close(0)
        self.chan.close(0 if self.disconnected else None)
        return self.engine.exit_code

    def _still_relaying(self) -> bool:
        """A relay whose own work is over stays while its subtree still works (a Kill ends the ranks here first:
        the others' last output, exit codes and goodbyes still come through here), until the coordinator says
        Shutdown, or falls silent."""
        if self.relay is None or self.relay.all_gone() or self.shutdown_seen:
            return False
        return time.monotonic() - self.engine.last_heard < self.engine.dead_s

    def _read_stdin(self) -> None:
        assert self.stdin_fd is not None
        try:
            more = os.read(self.stdin_fd, 4096)
        except OSError:
            more = b""
        if not more:
            self.poller.unregister(self.stdin_fd)
            self.stdin_fd = None
            self.act(self.engine.on_session_closed())

    def _read_monitor(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        gone = False
        while True:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                break
            gone = gone or event.get("event") == zmq.EVENT_DISCONNECTED
        if gone:
            self.poller.unregister(self.monitor)
            self.chan.sock.disable_monitor()
            self.monitor.close(0)
            self.monitor = None
            self.disconnected = True  # the coordinator's end closed: nothing it is sent now will be read
            self.act(self.engine.on_session_closed())

    def _drain_control(self) -> None:
        if self.relay is None:
            while (got := self.chan.recv_nowait()) is not None:
                self.act(self.engine.on_message(got[0], got[1], time.monotonic()))
            return
        while (frames := self.chan.recv_frames_nowait()) is not None:
            mine = self.relay.down(frames)
            if mine:
                msg = m.decode_to_agent(mine[0])
                self.shutdown_seen = self.shutdown_seen or isinstance(msg, m.Shutdown)
                self.act(self.engine.on_message(msg, mine[1] if len(mine) > 1 else None, time.monotonic()))

    def _drain_children(self, timeout: float) -> None:
        """Forward what the children still send until each of them said goodbye (or ``timeout``)."""
        assert self.relay is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.relay.all_gone():
            for sock, _ in self.poller.poll(timeout=50):
                if sock in self.relay.sockets():
                    self.relay.handle(sock)
                elif sock is self.chan.sock:  # what is still on its way down (their Shutdown) goes on
                    while (frames := self.chan.recv_frames_nowait()) is not None:
                        self.relay.down(frames)

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def watch_fd(self, fd: int, handler: Any, writable: bool = False) -> None:
        """Call ``handler(fd)`` when ``fd`` can be read (or, ``writable``, written)."""
        self.handlers[fd] = handler
        self.poller.register(fd, zmq.POLLOUT if writable else zmq.POLLIN)

    def unwatch_fd(self, fd: int) -> None:
        self.handlers.pop(fd, None)
        try:
            self.poller.unregister(fd)
        except KeyError:
            pass

    # -- actions -----------------------------------------------------------------------------------------------
    def act(self, actions: list[e.NodeAction]) -> None:
        for a in actions:
            if self.sampler is not None and isinstance(a, (e.Spawn, e.SpawnProcess, e.RunExec)):
                self.sampler.arm(time.monotonic())  # the job's processes start here: telemetry has something to see
            if isinstance(a, e.Send):
                self.send(a.msg, a.data)
            elif isinstance(a, e.PmiReply):
                self.ps.pmi_send(a.rank, a.line)
            elif isinstance(a, e.Spawn):
                self.act(self.engine.spawned(*self.ps.spawn(a.start)))
            elif isinstance(a, (e.SpawnProcess, e.RunHealth)):
                start = self.engine.start
                assert start is not None
                base = self.ps.prepare(start)
                if isinstance(a, e.SpawnProcess):
                    self.ps.named.start(a.spec, base, start.cwd or None)
                else:
                    self.ps.named.check(a.name, a.argv, a.timeout, base, start.cwd or None)
            elif isinstance(a, e.SignalAll):
                self.ps.signal_all(a.sig)
            elif isinstance(a, e.RunExec):
                pid = self.ps.execs.start(a.id, a.command, self.ps.node_env, self.child_preexec())
                if pid is None:
                    self.act(self.engine.exec_exited(a.id, 127))
                elif self.watchdog is not None:
                    self.watchdog.add_group(pid)
            elif isinstance(a, e.KillExec):
                self.ps.execs.kill(a.id)
            elif isinstance(a, e.DeliverRexec) and self.ps.rsh is not None:
                self.ps.rsh.deliver(a.msg, a.data)
            elif isinstance(a, e.WriteStdin):
                self.ps.write_stdin(a.ranks, a.data, a.eof)
            elif isinstance(a, e.Remount):
                self._remount_shm(a.size)
            elif isinstance(a, e.Log):
                log.warning("mnp agent %d: %s", self.node, a.text)

    def _remount_shm(self, size: int) -> None:
        """Grow /dev/shm (root, and only because the user opted in); answer with what it has now."""
        error = ""
        if os.geteuid() != 0:
            error = "not root"
        else:
            p = subprocess.run(["mount", "-o", f"remount,size={size}", "/dev/shm"], capture_output=True, text=True)
            error = p.stderr.strip() if p.returncode else ""
        total, free = shm_free("/dev/shm")
        self.send(m.ShmRemounted(total, free, error))


def _readline(fd: int) -> str:
    """One line, byte by byte: a buffered read could swallow what comes after it (or block for it)."""
    out = bytearray()
    while not out.endswith(b"\n"):
        b = os.read(fd, 1)
        if not b:
            break
        out += b
    return out.decode()


def _logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.raiseExceptions = False  # a closed stderr (SSH session gone) must not stop the agent


def run_from_fd(fd: int) -> int:
    """A forked node's init: the handoff comes on a pipe instead of stdin."""
    with os.fdopen(fd, "rb") as pipe:
        line = pipe.readline()
    if not line:
        return 2  # the coordinator went away before handing over
    _logging()
    return Agent(json.loads(line)).run()


def main() -> int:
    _logging()
    line = _readline(sys.stdin.fileno())
    if not line:
        log.error("mnp agent: no job handoff on stdin")
        return 2
    handoff = json.loads(line)
    if not handoff.get("watch_stdin"):
        sys.stdin.close()
    return Agent(handoff).run()


if __name__ == "__main__":
    sys.exit(main())
