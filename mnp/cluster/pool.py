"""Pools of agents that stay between jobs: ``mnp pool start|status|stop`` and ``mnp launch --via pool``.

A pool agent (:mod:`mnp.node.poold`) runs on each host of the pool. ``mnp pool start`` reaches the hosts over SSH
exactly as a job does (ssh_config, host keys, the preflight of Python, mnp and MPI) and, instead of a job's
handoff, sends each host's agent a pool handoff with this machine's pool client public key; the agent detaches and
answers with its port and its own public key, which are kept in ``$MNP_HOME/pool.json`` (0600, with the client's
key pair). A job launched ``--via pool`` then asks each host's pool agent, over CURVE, to fork the job's agent: no
SSH session, login shell or interpreter start per host and job (PRRTE's DVM and Flux's instance make the same
trade). The pool agent's key came back over the host-key-checked SSH channel, so the client knows it talks to that
host; the pool agent hears only the client key that started it.

:class:`PoolCluster` is the job's provider: its nodes are the pool's hosts (named by ``--hostfile``/``--hosts``, in
that order), its agents are forked by their pool agents, and it learns of an agent's end from the pool agent
(``Ended``), as the SSH provider does from the channel's exit status.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnp.cluster.base import Cluster, NodeInfo
from mnp.cluster.hosts import HostSpec
from mnp.control import pool as p
from mnp.errors import ClusterError, HostError, MnpError, UsageError

__all__ = ["PoolStore", "PoolCluster", "PoolClient", "start_pool", "stop_pool", "ping_pool", "DEFAULT_IDLE_S"]

#: a pool agent with no job and no request for this long exits by itself
DEFAULT_IDLE_S = 3600.0
#: how long a pool agent has to answer (it is up already: this is a round trip and, for Run, one fork)
ANSWER_S = 5.0


def _store_path() -> Path:
    from mnp.records import mnp_home

    return mnp_home() / "pool.json"


@dataclass
class PoolStore:
    """``$MNP_HOME/pool.json``: the client's CURVE key pair and, per host (by the name the hostfile gives it),
    where its pool agent listens and its public key."""

    public: str
    secret: str
    hosts: dict[str, dict[str, Any]]

    @classmethod
    def load(cls, create: bool = False) -> PoolStore:
        """The pool file (an empty pool when there is none; ``create``: with a fresh client key pair). A file
        others may read, or that is not what mnp writes, is a usage error naming it: its secret is a key to every
        pool host."""
        path = _store_path()
        try:
            st = os.stat(path)
            if st.st_uid != os.getuid() or st.st_mode & 0o077:
                raise UsageError(f"{path}: readable by others or not yours (mode {st.st_mode & 0o777:o}): its "
                                 "secret key reaches every pool host; chmod 600 it (or mnp pool stop and remove it)")
            data = json.loads(path.read_text())
            store = cls(str(data["public"]), str(data["secret"]), dict(data.get("hosts") or {}))
            for name, rec in store.hosts.items():
                if not isinstance(rec, dict) or not isinstance(rec.get("address"), str) or \
                        not isinstance(rec.get("port"), int) or not 0 < rec["port"] < 65536 or \
                        not (isinstance(rec.get("public"), str) and len(rec["public"]) == 40):
                    raise ValueError(f"host {name!r}: not a pool host entry")
            if len(store.public) != 40 or len(store.secret) != 40:
                raise ValueError("the client key pair is not two 40-character Z85 keys")
            return store
        except FileNotFoundError:
            if not create:
                return cls("", "", {})
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise UsageError(f"{path}: not a pool file ({e}): remove it (its pool agents exit after their idle "
                             "time) and run mnp pool start again") from None
        except OSError as e:
            raise UsageError(f"{path}: cannot read it: {e.strerror or e}") from None
        import zmq

        pub, sec = zmq.curve_keypair()
        return cls(pub.decode(), sec.decode(), {})

    def save(self) -> None:
        from mnp.records import _private_dir

        path = _store_path()
        tmp = path.with_name(f".pool.json.{os.getpid()}")
        try:
            _private_dir(path.parent, tighten=False)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"public": self.public, "secret": self.secret, "hosts": self.hosts}, f, indent=1)
            os.replace(tmp, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise UsageError(f"{path}: cannot write it: {e.strerror or e}") from None


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One ``mnp pool start``/``stop`` at a time per pool file (two at once would each start agents, and one of the
    files would lose the other's)."""
    import fcntl

    from mnp.records import _private_dir, mnp_home

    try:
        _private_dir(mnp_home(), tighten=False)
        fd = os.open(mnp_home() / "pool.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise UsageError(f"{mnp_home()}: cannot lock the pool file there: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class PoolClient:
    """CURVE DEALER sockets to some pool agents, one per host."""

    def __init__(self, store: PoolStore, names: list[str]) -> None:
        import zmq

        self.zmq = zmq
        self.ctx = zmq.Context()
        self.names = names
        self.socks: dict[str, Any] = {}
        for name in names:
            rec = store.hosts[name]
            s = self.ctx.socket(zmq.DEALER)
            s.linger = 0
            s.curve_serverkey = str(rec["public"]).encode()
            s.curve_publickey = store.public.encode()
            s.curve_secretkey = store.secret.encode()
            s.connect(f"tcp://{_bracket(str(rec['address']))}:{int(rec['port'])}")
            self.socks[name] = s
        self.by_sock = {s: n for n, s in self.socks.items()}
        self.poller = zmq.Poller()  # made once: a job's provider polls it every 50 ms (lost agents)
        for s in self.socks.values():
            self.poller.register(s, zmq.POLLIN)
        self.backlog: list[tuple[str, p.FromPool | str]] = []  # what came while ask() waited for something else

    def send(self, name: str, msg: p.ToPool) -> bool:
        """False when it cannot even be queued (the handshake was refused): as good as no answer."""
        try:
            self.socks[name].send(p.encode(msg), self.zmq.NOBLOCK)
        except self.zmq.Again:
            return False
        return True

    def recv(self, timeout_ms: int) -> list[tuple[str, p.FromPool | str]]:
        """What came within ``timeout_ms`` (at least one answer, or none when the time ran out)."""
        out: list[tuple[str, p.FromPool | str]] = []
        for s, _ in self.poller.poll(timeout_ms):
            while True:
                try:
                    frame = s.recv(self.zmq.NOBLOCK)
                except self.zmq.Again:
                    break
                out.append((self.by_sock[s], p.decode_from_pool(frame)))
        return out

    def ask(self, msgs: dict[str, p.ToPool], want: Callable[[Any], bool], timeout: float = ANSWER_S,
            expect: list[str] | None = None) -> dict[str, p.FromPool | str]:
        """Send each host its request; the first answer ``want`` accepts (or a Refused, or a string: what was
        wrong) per host, until every host answered or ``timeout``. ``expect``: also wait for these hosts' answers
        to what was sent before."""
        from mnp import interrupts

        for name, msg in msgs.items():
            self.send(name, msg)
        waiting = set(msgs) | set(expect or ())
        got: dict[str, p.FromPool | str] = {}
        deadline = time.monotonic() + timeout
        signals = len(interrupts.pending)  # a Ctrl-C from now on ends the wait (the caller handles it)
        while len(got) < len(waiting) and (left := deadline - time.monotonic()) > 0 and \
                len(interrupts.pending) == signals:
            for name, ans in self.recv(min(int(left * 1000) + 1, 100)):
                if name in waiting and name not in got and (isinstance(ans, (str, p.Refused)) or want(ans)):
                    got[name] = ans
                else:
                    self.backlog.append((name, ans))  # an agent's end, say: its job must still hear of it
        return got

    def close(self, linger_ms: int = 0) -> None:
        """``linger_ms``: how long what is still queued (a Kill) may take to leave; by default it is dropped."""
        for s in self.socks.values():
            s.close(linger_ms)
        self.ctx.term()


def _ask_each(store: PoolStore, names: list[str], msg: p.ToPool, want: type,
              timeout: float = ANSWER_S) -> dict[str, p.FromPool | str]:
    """``msg`` to each of these pool hosts on a client of its own; each host's answer of type ``want`` (or its
    refusal), until all answered or ``timeout``."""
    if not names:
        return {}
    client = PoolClient(store, names)
    try:
        return client.ask({n: msg for n in names}, lambda a: isinstance(a, want), timeout)
    finally:
        client.close()


def _bracket(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _not_answering(name: str, rec: dict[str, Any]) -> str:
    return (f"its pool agent at {rec.get('address')}:{rec.get('port')} does not answer (stopped, idle for "
            f"{float(rec.get('idle_s', DEFAULT_IDLE_S)):g} s, or the host is down): run mnp pool start again")


def ping_pool(names: list[str] | None = None, timeout: float = ANSWER_S) -> list[tuple[str, dict[str, Any],
                                                                                    p.FromPool | str | None]]:
    """Each pool host (``names``: these, in this order; else all) with its record and its answer to a Ping
    (None: no answer in ``timeout``)."""
    store = PoolStore.load()
    names = list(store.hosts) if names is None else names
    known = [n for n in names if n in store.hosts]
    answers = _ask_each(store, known, p.Ping(), p.Ready, timeout)
    return [(n, store.hosts.get(n, {}), answers.get(n)) for n in names]


def start_pool(hosts: list[HostSpec], ssh: Any, idle_s: float,
               say: Callable[[str], None]) -> list[tuple[str, str]]:
    """Start a pool agent on each host that has none answering (over SSH, with the job's preflight; inside a Slurm
    allocation through srun); returns each host with what happened (``started``, ``running``). A host that cannot
    be reached, fails its preflight, or whose new pool agent this machine cannot reach is one error naming it; the
    pool agents this call started on the others are stopped again, and one it could not tell to stop exits by
    itself when no client reaches it within 30 s."""
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise UsageError(f"host {dup}: named twice (a pool has one agent per host)")
    with _locked():
        store = PoolStore.load(create=True)
        alive = {n for n, _, ans in ping_pool([n for n in names if n in store.hosts]) if isinstance(ans, p.Ready)}
        todo = [h for h in hosts if h.name not in alive]
        result = {n: "running" for n in alive}
        if todo:
            new = (_start_srun(todo, idle_s, getattr(ssh, "remote_python", None) or sys.executable, say, store)
                   if getattr(ssh, "via", "ssh") == "srun" else _start_ssh(todo, ssh, idle_s, say, store))
            try:
                # reached from here: a pool agent no one reaches exits within FIRST_CONTACT_S (a firewall, a
                # proxy between), so what is recorded is what answers
                store.hosts.update(new)
                got = _ask_each(store, list(new), p.Ping(), p.Ready)
                bad = next((n for n in new if not isinstance(got.get(n), p.Ready)), None)
                if bad is not None:
                    raise HostError(bad, f"its new pool agent does not answer at {new[bad]['address']}:"
                                         f"{new[bad]['port']} from here (a firewall, or a proxy between?): it exits "
                                         f"by itself; use --via ssh")
                store.save()
            except BaseException:
                _stop(store, list(new))
                raise
            result.update({n: "started" for n in new})
    return [(n, result[n]) for n in names]


def _start_ssh(hosts: list[HostSpec], ssh: Any, idle_s: float, say: Callable[[str], None],
               store: PoolStore) -> dict[str, dict[str, Any]]:
    """Pool agents over SSH: each host's agent, after its preflight, gets a pool handoff instead of a job and
    answers ``MNP-POOL <JSON>``. Every host's answer is read before a failure is raised (the others are stopped)."""
    from dataclasses import replace

    from mnp.cluster.ssh import SshCluster
    from mnp.node.poold import TAG

    cluster = SshCluster(f"pool-{os.getpid()}", hosts, replace(ssh, tree_width=len(hosts)))
    new: dict[str, dict[str, Any]] = {}
    try:
        cluster.create(None, lambda k, n: say(f"hosts ready {k}/{n}"))
        behind = next((h for h in cluster.hosts if not h.direct or not h.address), None)
        if behind is not None:
            raise HostError(behind.spec.name, "reached through a proxy (ProxyJump/ProxyCommand): its pool agent "
                                              "could not be reached directly from here; use --via ssh")
        line = json.dumps({"pool": {"client_public": store.public, "idle_s": idle_s}}).encode() + b"\n"
        for h in cluster.hosts:
            h.channel.sendall(line)
        problem: HostError | None = None
        for h in cluster.hosts:  # every answer, also after a failure: what started is known, and stopped
            said = _read_tagged(h.channel, TAG)
            if not said.startswith("{"):
                problem = problem or HostError(h.spec.name, "the pool agent did not start: "
                                                            f"{said.lstrip('!') or 'no answer'}")
                continue
            info = json.loads(said)
            new[h.spec.name] = {"address": h.address, "port": int(info["port"]), "public": str(info["public"]),
                                "pid": int(info["pid"]), "hostname": (h.info or {}).get("hostname", h.spec.name),
                                "idle_s": idle_s, "started": time.time()}
        if problem is not None:
            raise problem
    except BaseException:
        if new:
            _stop(PoolStore(store.public, store.secret, new), list(new))
        raise
    finally:
        cluster.teardown()
    return new


def _start_srun(hosts: list[HostSpec], idle_s: float, python: str, say: Callable[[str], None], store: PoolStore,
                timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """Pool agents as the tasks of one srun step that stays (inside a Slurm allocation: no SSH to the nodes). Each
    task runs the preflight and says ``MNP-POOL <JSON>``, labelled by srun; the step goes on after this process
    exits, its output in ``$MNP_HOME/pool-srun-<job>-<pid>.out`` (removed by mnp pool stop). ``timeout``: how
    long the step may go without one more node's pool agent starting (a large allocation takes longer in all)."""
    import re
    import subprocess

    import hostlist

    from mnp.cluster.slurm import SlurmCluster
    from mnp.cluster.ssh_task import preflight_problem
    from mnp.node.poold import TAG
    from mnp.records import _private_dir, mnp_home

    names = [h.name for h in hosts]
    env = {k: v for k, v in os.environ.items() if k != "MNP_JOB_SECRET"}
    toward = env.get("MNP_BIND_ADDRESS") or SlurmCluster(f"pool-{os.getpid()}", hosts, python)._control_address()
    _private_dir(mnp_home(), tighten=False)
    out = mnp_home() / f"pool-srun-{env.get('SLURM_JOB_ID', 'x')}-{os.getpid()}.out"
    argv = ["srun", f"--nodes={len(names)}", f"--ntasks={len(names)}", "--ntasks-per-node=1",
            f"--nodelist={hostlist.collect_hostlist(names)}", "--overlap", "--kill-on-bad-exit=0", "--wait=0",
            "--mpi=none", "--cpu-bind=none", "--label", "--input=none", "--job-name=mnp-pool",
            python, "-m", "mnp.node.poold", "--client-public", store.public, "--idle", f"{idle_s:g}",
            "--toward", toward]
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # the pool's step outlives this command
    except FileNotFoundError:
        out.unlink(missing_ok=True)
        raise UsageError("mnp pool start: srun is not on PATH (or --via ssh)") from None
    finally:
        os.close(fd)
    said: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    shown = -1
    try:
        while len(said) < len(names):
            for line in out.read_text(errors="replace").splitlines():
                m = re.match(rf"^\s*\d+: {TAG} (\{{.*)$", line)
                if m:
                    info = json.loads(m.group(1))
                    if info.get("node") in names:
                        said[info["node"]] = info
            bad = next((n for n in names if n in said and "port" not in said[n]), None)
            if bad is not None:
                raise HostError(bad, preflight_problem(said[bad].get("facts") or {}, python)
                                or "the pool agent did not start")
            if len(said) < len(names) and proc.poll() is not None:
                last = [ln for ln in out.read_text(errors="replace").splitlines() if TAG not in ln][-2:]
                raise ClusterError(f"srun ended (exit {proc.returncode}) before every node's pool agent started: "
                                   + (" / ".join(last) or "no output"))
            if len(said) != shown:  # a line when the count moves, not one every poll
                shown = len(said)
                deadline = time.monotonic() + timeout
                say(f"hosts ready {len(said)}/{len(names)}")
            if time.monotonic() > deadline:
                missing = [n for n in names if n not in said]
                raise ClusterError(f"{len(missing)} node(s) did not start a pool agent through srun ({len(said)} did; "
                                   f"none more in the last {timeout:g}s): {', '.join(missing[:4])}")
            time.sleep(0.05)
    except BaseException:
        proc.terminate()  # srun passes it on to the step: every task ends
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        out.unlink(missing_ok=True)
        raise
    return {n: {"address": said[n].get("address") or n, "port": int(said[n]["port"]),
                "public": str(said[n]["public"]), "pid": int(said[n]["pid"]),
                "hostname": said[n].get("facts", {}).get("hostname", n), "idle_s": idle_s, "started": time.time(),
                "via": "srun", "output": str(out)} for n in names}


def _read_tagged(chan: Any, tag: str) -> str:
    """The rest of the channel's first line that starts with ``tag``, or "" when the channel ends first."""
    out = b""
    chan.settimeout(30)
    try:
        while True:
            for ln in out.split(b"\n")[:-1]:
                if ln.startswith(tag.encode() + b" "):
                    return ln.decode(errors="replace").split(" ", 1)[1]
            more = chan.recv(65536)
            if not more:
                return ""
            out += more
    except (OSError, EOFError):
        return ""


def stop_pool(names: list[str] | None = None, timeout: float = ANSWER_S) -> list[tuple[str, str]]:
    """Stop these pool hosts' agents (None: all) and forget them; each host with what happened."""
    with _locked():
        store = PoolStore.load()
        names = list(store.hosts) if names is None else [n for n in names if n in store.hosts]
        out = _stop(store, names, timeout)
        if names:
            store.save()
    return out


def _stop(store: PoolStore, names: list[str], timeout: float = ANSWER_S) -> list[tuple[str, str]]:
    """Tell these hosts' pool agents to stop and drop them from ``store`` (not saved here), with what each said;
    an srun pool's output file goes with its last host."""
    answers = _ask_each(store, names, p.Stop(), p.Stopping, timeout)
    outputs = {str(store.hosts[n].get("output")) for n in names if store.hosts[n].get("output")}
    for n in names:
        store.hosts.pop(n, None)
    for path in outputs - {str(r.get("output")) for r in store.hosts.values()}:  # an srun pool's last node
        Path(path).unlink(missing_ok=True)
    out = []
    for n in names:
        a = answers.get(n)
        out.append((n, f"stopping ({a.agents} job agent(s) told to stop)" if isinstance(a, p.Stopping) and a.agents
                    else "stopped" if isinstance(a, p.Stopping) else "not answering (forgotten)"))
    return out


class PoolCluster(Cluster):
    """A job's nodes on the pool's hosts: each node's agent forked by its host's pool agent."""

    def __init__(self, job_id: str, hosts: list[HostSpec]) -> None:
        super().__init__(job_id, len(hosts))
        self.hosts = hosts
        self.store = PoolStore.load()
        self.client: PoolClient | None = None
        self.ready: dict[str, p.Ready] = {}
        self.asked: dict[int, float] = {}  # node -> when its Run went, until its pool agent answered
        self.refused: dict[int, str | None] = {}  # node -> why its Run came to nothing (None: no answer in time)
        self.said = False  # lost() raised for the first refusal; the others count as nodes whose agent ended
        self.running: dict[int, int] = {}  # node -> the agent's pid on its host
        self.ended: dict[int, int] = {}  # node -> exit status, as its pool agent said
        self.unreachable: MnpError | None = None  # what create() found wrong (not found again by waiting again)

    def _name(self, node: int) -> str:
        return self.hosts[node].name

    def begin(self) -> None:
        """Ask every pool agent who it is, without waiting: the CURVE handshakes and the answers come while the
        caller loads and plans the job (:meth:`create` collects them)."""
        if self.client is not None or any(h.name not in self.store.hosts for h in self.hosts):
            return  # (create says which host is missing)
        names = [h.name for h in self.hosts]
        self.client = PoolClient(self.store, names)
        for n in names:
            self.client.send(n, p.Ping())

    def create(self, shm_bytes: int | None, progress: Callable[[int, int], None] | None = None) -> list[NodeInfo]:
        missing = [h.name for h in self.hosts if h.name not in self.store.hosts]
        if missing:
            raise UsageError(f"host {missing[0]}: no pool agent started for it"
                             + (f" (nor for {len(missing) - 1} more)" if len(missing) > 1 else "")
                             + ": run mnp pool start with the same hosts, or launch --via ssh")
        if self.unreachable is not None:  # found when the CLI tried ahead of the job: said again, not waited again
            raise self.unreachable
        if self.client is not None and self.nodes:  # reached ahead of the job (its teardown has not come yet)
            return self.nodes
        try:
            nodes = self._reach()
        except MnpError as e:
            self.unreachable = e
            raise
        if progress:
            progress(len(nodes), len(nodes))
        return nodes

    def _reach(self) -> list[NodeInfo]:
        import mnp

        names = [h.name for h in self.hosts]
        self.begin()
        assert self.client is not None
        answers = self.client.ask({}, lambda a: isinstance(a, p.Ready), expect=names)
        here = f"{sys.version_info[0]}.{sys.version_info[1]}"
        for n in names:
            a = answers.get(n)
            if not isinstance(a, p.Ready):
                raise HostError(n, _not_answering(n, self.store.hosts[n]) if a is None else
                                f"its pool agent refused: {a.reason if isinstance(a, p.Refused) else a}")
            if a.python != here or a.mnp != mnp.__version__:
                raise HostError(n, f"its pool agent runs mnp {a.mnp} on Python {a.python}, this is mnp "
                                   f"{mnp.__version__} on Python {here}: mnp pool stop, then mnp pool start")
            self.ready[n] = a
        self.control_address = os.environ.get("MNP_BIND_ADDRESS") or self._local_address()
        self.nodes = [NodeInfo(i, self.ready[n].hostname, str(self.store.hosts[n]["address"]))
                      for i, n in enumerate(names)]
        return self.nodes

    def _local_address(self) -> str:
        from mnp.fabric.facts import address_toward

        for h in self.hosts:
            if (mine := address_toward(str(self.store.hosts[h.name]["address"]))) is not None:
                return mine
        raise ClusterError("no address of this host the pool's hosts can reach is known: set MNP_BIND_ADDRESS")

    def start_agents(self, handoffs: dict[int, dict[str, Any]]) -> None:
        """Each node's Run to its pool agent, without waiting: the forks and the agents' start overlap whatever
        the caller does next; the answers are read with the agents' ends (:meth:`lost` says what went wrong)."""
        assert self.client is not None
        now = time.monotonic()
        for i, h in handoffs.items():
            self.client.send(self._name(i), p.Run(i, h))  # not even queued: as good as no answer
            self.asked[i] = now

    def _drain(self, timeout_ms: int = 0) -> None:
        if self.client is None:
            return
        index = {h.name: i for i, h in enumerate(self.hosts)}
        came, self.client.backlog = self.client.backlog, []
        for name, a in came + self.client.recv(0 if came else timeout_ms):
            node = index.get(name)
            if isinstance(a, (p.Running, p.Refused, p.Ended)) and (node is None or a.node != node):
                continue  # not about this job's node on that host
            if isinstance(a, p.Running) and self.asked.pop(a.node, None) is not None:
                self.running[a.node] = a.pid
            elif isinstance(a, p.Refused) and self.asked.pop(a.node, None) is not None:  # type: ignore[arg-type]
                self.refused[a.node] = a.reason  # type: ignore[index]
            elif isinstance(a, p.Ended) and self.running.get(a.node) == a.pid:
                self.ended[a.node] = a.status

    def lost(self) -> dict[int, int]:
        """The agents that ended (node -> exit status). The first Run its pool agent refused, or left unanswered
        for :data:`ANSWER_S`, raises (the job's failure, naming the host); any other such node then counts as one
        whose agent ended (status 255), so a teardown neither raises nor waits for it."""
        self._drain()
        now = time.monotonic()
        for i in [i for i, t in self.asked.items() if now - t > ANSWER_S]:
            del self.asked[i]
            self.refused[i] = None
        if self.refused and not self.said:
            self.said = True
            i = min(self.refused)
            n, why = self._name(i), self.refused[i]
            raise HostError(n, _not_answering(n, self.store.hosts[n]) if why is None
                            else f"its pool agent refused node {i}'s agent: {why}")
        return {**self.ended, **{i: 255 for i in self.refused}}

    def wait_agents(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (set(self.running) - set(self.ended) or self.asked) and (left := deadline - time.monotonic()) > 0:
            self._drain(int(left * 1000) + 1)

    def teardown(self) -> None:
        if self.client is None:
            return
        late: set[int] = set()
        try:
            self.wait_agents(3)  # the agents end on the coordinator's Shutdown
            # else (a job that failed early) their pool agent tells them, as the end of an SSH session would; also
            # where a Run was given up on (a pool agent that answers late still forks: Run and Kill come in order)
            late = {i for i, why in self.refused.items() if why is None}
            for node in sorted(set(self.running) - set(self.ended) | set(self.asked) | late):
                self.client.send(self._name(node), p.Kill(node))
            self.wait_agents(7)
            # an agent whose end was never said: its pool agent died (the agent then got SIGTERM and stopped its
            # ranks: PR_SET_PDEATHSIG), or it is cut off (it stops its ranks when the coordinator falls silent)
        finally:
            self.client.close(500 if late else 0)
            self.client = None
            # a next attempt of the job reaches the pool afresh
            self.asked, self.refused, self.running, self.ended, self.ready = {}, {}, {}, {}, {}
            self.said, self.unreachable, self.nodes = False, None, []
