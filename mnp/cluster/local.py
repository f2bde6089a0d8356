"""The embedded local cluster: N isolated nodes on this machine.

Each node is a process tree in its own network, UTS, IPC, PID and mount namespaces (shared/notes/virtual-nodes.md),
with its own hostname, its own /dev/shm (a tmpfs sized from the job) and an /etc/hosts naming every node. The nodes
hang off one bridge in the root namespace; the bridge's address is the coordinator's, and node addresses exist only
inside the namespaces made here. The agent is each node's init: when it ends, the node's processes end.

Every object is named after the job (``mnp-<id>-<n>`` namespaces, ``mnpb-<id>`` bridge, ``mv<id>h<n>`` veths) and
a pid file in ``/run/mnp`` names the coordinator that owns them, so :func:`clean_stale` can find and remove what a
crashed run left behind before the next one starts.

Each node also gets its own CPUs where the host has enough (:func:`plan_node_cpus`): the node's init is pinned to
them, so ``nproc``, hwloc and the agent's default ranks per node see only those, and MPI binding inside one node
cannot pile ranks of several nodes onto the same core.

Interrupts: every helper program (``ip``) runs in a session of its own, so a terminal's Ctrl-C reaches only the
coordinator; a helper that dies anyway is a :class:`ClusterError` naming it, never a stray ``BrokenPipeError``.
``create`` may be cut short at any point (an exception from a signal handler included) and ``teardown`` then
removes whatever it had made: everything is found by name, and each forked node is recorded before a signal
handler can run.

Without root (or without ``ip``/``unshare``) :class:`ProcessCluster` runs the agents as plain local processes and
says, in one line, that the nodes are not isolated.
"""

from __future__ import annotations

import fcntl
import functools
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mnp.cluster.base import Cluster, NodeInfo, agent_command
from mnp.cluster.cpus import plan_node_cpus, sysfs_core  # noqa: F401 - sysfs_core: re-exported
from mnp.cluster.iproute import ip_in_namespaces, run_ip, write_all
from mnp.cluster.nsnode import NodeProcess, fork_node, held_signals
from mnp.errors import ClusterError
from mnp.pids import pid_alive

__all__ = ["LocalCluster", "ProcessCluster", "clean_stale", "local_cluster", "namespaces_available", "plan_node_cpus",
           "sysfs_core"]

RUN_DIR = Path(os.environ.get("MNP_RUN_DIR", "/run/mnp"))
_NS = re.compile(r"^mnp-([0-9a-f]{6})-(\d+)$")
_BR = re.compile(r"^mnpb-([0-9a-f]{6})$")
_VETH = re.compile(r"^mv([0-9a-f]{6})h(\d+)(@.*)?$")
_RUN = re.compile(r"^([0-9a-f]{6})(\.pid)?$")
MAX_LOCAL_NODES = 240


def namespaces_available() -> bool:
    return os.geteuid() == 0 and bool(shutil.which("ip")) and bool(shutil.which("unshare"))


def _owner_alive(short: str) -> bool:
    try:
        pid = int((RUN_DIR / f"{short}.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return pid_alive(pid)


def _links() -> set[str]:
    names = set()
    for line in run_ip("-o", "link", "show", check=False).splitlines():
        parts = line.split(":")
        if len(parts) >= 2:
            names.add(parts[1].strip().split("@")[0])
    return names


def _private_root(short: str) -> str:
    """Where a local job's agents make their private directories (hostfiles, FIFOs, each node's TMPDIR): in the
    host's temporary directory, owned by the cluster, so they go with it even when an agent is killed -- an
    isolated node's agent is its PID 1, and its watchdog dies with it."""
    return os.path.join(tempfile.gettempdir(), f"mnp-{short}")


def _remove(short: str, namespaces: list[str], links: list[str], wait_s: float = 3.0) -> None:
    """Kill what runs in the namespaces, delete them and the links, and wait until the links are gone.

    Deleting the namespaces first lets the kernel remove all their veth pairs in one batch (one RCU grace period);
    deleting veths one by one costs a grace period each. Links still there after ``wait_s`` are deleted by name.
    Namespaces that do not exist (a ``create`` cut short) are skipped.
    """
    if namespaces:
        for pid in run_ip("-force", "-batch", "-", stdin="".join(f"netns pids {ns}\n" for ns in namespaces),
                       check=False).split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    bridges = [link for link in links if _BR.match(link)]
    batch = [f"netns del {ns}" for ns in namespaces] + [f"link del {b}" for b in bridges]
    if batch:
        run_ip("-force", "-batch", "-", stdin="\n".join(batch) + "\n", check=False)
    deadline = time.monotonic() + wait_s
    while (left := {link for link in links if os.path.exists(f"/sys/class/net/{link}")}) and \
            time.monotonic() < deadline:
        time.sleep(0.005)
    if left:
        run_ip("-force", "-batch", "-", stdin="".join(f"link del {link}\n" for link in sorted(left)), check=False)
    shutil.rmtree(RUN_DIR / short, ignore_errors=True)
    shutil.rmtree(_private_root(short), ignore_errors=True)
    try:
        (RUN_DIR / f"{short}.pid").unlink()
    except FileNotFoundError:
        pass


def _inventory() -> dict[str, tuple[list[str], list[str]]]:
    found: dict[str, tuple[list[str], list[str]]] = {}
    for line in run_ip("netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        if m := _NS.match(name):
            found.setdefault(m.group(1), ([], []))[0].append(name)
    for name in _links():
        if (m := _BR.match(name)) or (m := _VETH.match(name)):
            found.setdefault(m.group(1), ([], []))[1].append(name)
    if RUN_DIR.is_dir():  # a run cut short before it made any namespace or link leaves only its run files
        for path in RUN_DIR.iterdir():
            if m := _RUN.match(path.name):
                found.setdefault(m.group(1), ([], []))
    return found


def clean_stale() -> list[str]:
    """Remove what local clusters whose coordinator is gone left behind: namespaces, links and run files (as
    root), and the private directories of plain-process nodes (``--no-isolate``, whose owner is named in the
    directory itself); returns their job ids."""
    removed = []
    if namespaces_available():
        for short, (namespaces, links) in _inventory().items():
            if not _owner_alive(short):
                _remove(short, namespaces, links)
                removed.append(short)
    return removed + [short for short in _stale_private_roots() if short not in removed]


_OWNER = ".owner"  # in a plain-process cluster's private directory: the pid of the coordinator that made it


def _stale_private_roots() -> list[str]:
    root = tempfile.gettempdir()
    found = []
    try:
        names = os.listdir(root)
    except OSError:
        return []
    for name in names:
        if not (m := re.fullmatch(r"mnp-([0-9a-f]{6})", name)):
            continue
        path = os.path.join(root, name)
        try:
            st = os.lstat(path)
            with open(os.path.join(path, _OWNER)) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # no owner named: an isolated cluster's (its pid file is in the run directory), or not ours
        if st.st_uid == os.geteuid() and not pid_alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            found.append(m.group(1))
    return found


def _short(job_id: str) -> str:
    """Six hex digits naming the job's namespaces and links: its id's own (mnp's ids are hex), else a digest of
    it (an array child ``<job>:<index>`` must not share its parent's or a sibling's)."""
    if re.fullmatch(r"[0-9a-f]{6}", job_id[:6]) and ":" not in job_id:
        return job_id[:6]
    import hashlib

    return hashlib.sha256(job_id.encode()).hexdigest()[:6]


def _pick_subnet(short: str) -> ipaddress.IPv4Network:
    used = []
    for line in (run_ip("-4", "-o", "addr", check=False) + run_ip("-4", "route", check=False)).splitlines():
        for word in line.split():
            try:
                used.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                continue
    start = int(short, 16) % 250
    for k in range(250):
        net = ipaddress.IPv4Network(f"10.213.{(start + k) % 250}.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise ClusterError("no free 10.213.x.0/24 subnet for the local cluster")


class LocalCluster(Cluster):
    """Isolated nodes from Linux namespaces (root only).

    CPUs, for the coordinator to read (both set at construction, before ``create``):

    ``node_cpus``
        ``{node index: [cpu, ...]}``: the CPUs each node's init, and so everything in the node, is pinned to
        (:func:`plan_node_cpus` over this process's own affinity). A node's ``nproc``, its agent's ``cpus`` in
        the hello and hence the default ranks per node are ``len(node_cpus[node])``.
    ``cpus_shared``
        True when there are more nodes than CPUs, so that some CPU belongs to several nodes: then binding ranks to
        cores inside each node (Open MPI's default) can put ranks of different nodes on one core, and the
        coordinator should ask MPI not to bind (``--bind-to none``).
    """

    own_addresses = True  # each node is a network namespace of its own
    tree_by_default = False  # one machine's CPUs: a star unless --tree-width asks (README, Scale)

    probe_ifaces = False  # every node has eth0 on our bridge
    shm_private = True  # every node mounts its own tmpfs
    ns_init = True  # and its agent is the init of the node's PID namespace

    def __init__(self, job_id: str, num_nodes: int) -> None:
        super().__init__(job_id, num_nodes)
        if num_nodes > MAX_LOCAL_NODES:
            raise ClusterError(f"the local cluster makes at most {MAX_LOCAL_NODES} nodes (asked for {num_nodes})")
        self.short = _short(job_id)
        self.bridge = f"mnpb-{self.short}"
        self.dir = RUN_DIR / self.short
        self.private_root = _private_root(self.short)
        # each node's init runs the agent's code, forked: imported here, before create (whose every step may be cut
        # short by a Ctrl-C), never inside it -- an interrupt inside a class definition surfaces as a RuntimeError
        from mnp.node.agent import run_from_fd

        if num_nodes > 1:
            import psutil  # noqa: F401 - the agents' telemetry: once here (30 ms), not in each forked node

        self._agent_main = run_from_fd
        self.shm_bytes = 0
        self._nodes: dict[int, NodeProcess] = {}
        self.node_cpus: dict[int, list[int]] = plan_node_cpus(os.sched_getaffinity(0), num_nodes)
        owners = [cpu for cpus in self.node_cpus.values() for cpu in cpus]
        self.cpus_shared: bool = len(owners) != len(set(owners))

    def mac(self, node: int | None) -> str:
        """A locally administered MAC for a node's eth0 (``None``: the bridge), unique to this job and node."""
        j = int(self.short[:4], 16)
        i = 0xFFFF if node is None else node
        return f"02:6d:{j >> 8:02x}:{j & 0xFF:02x}:{i >> 8:02x}:{i & 0xFF:02x}"

    def ns(self, i: int) -> str:
        return f"mnp-{self.short}-{i}"

    def create(self, shm_bytes: int | None, progress: Callable[[int, int], None] | None = None,
               init: Callable[[int, int], int] | None = None) -> list[NodeInfo]:
        """Make the nodes. Each node's init is the agent, waiting for its handoff, unless ``init(node, fd)`` is
        given (tests use it to make nodes whose init is sshd).

        All or nothing: when it raises (an interrupt included) it has already torn down what it made, so a caller
        that does not reach its own ``teardown`` leaves nothing behind either (calling it again is harmless)."""
        try:
            return self._create(shm_bytes, init)
        except BaseException:
            self.teardown()
            raise

    def _create(self, shm_bytes: int | None, init: Callable[[int, int], int] | None) -> list[NodeInfo]:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        (RUN_DIR / f"{self.short}.pid").write_text(f"{os.getpid()}\n")
        self.dir.mkdir(parents=True, exist_ok=True)
        os.makedirs(_private_root(self.short), mode=0o700, exist_ok=True)
        # Concurrent launches must not pick the same subnet: choose and claim it (the bridge's address) under a lock.
        with open(RUN_DIR / "subnet.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            net = _pick_subnet(self.short)
            hosts = list(net.hosts())
            self.control_address = str(hosts[0])
            run_ip("-batch", "-", stdin=f"link add {self.bridge} address {self.mac(None)} type bridge\n"
                f"addr add {hosts[0]}/{net.prefixlen} dev {self.bridge}\nlink set {self.bridge} up\n")
        self.nodes = [NodeInfo(i, f"node{i}", str(hosts[9 + i])) for i in range(self.num_nodes)]
        self.shm_bytes = shm_bytes or 0
        # Every address has a fixed MAC and every node (and the bridge) a permanent neighbour entry for every
        # other: no ARP at start-up, and none of the kernel's neighbour table, which all namespaces share
        # (gc_thresh3, 1024 entries by default), is used -- 32 nodes talking all-to-all would overflow it.
        root: list[str] = []
        for n in self.nodes:
            root += [f"netns add {self.ns(n.index)}",
                     (f"link add mv{self.short}h{n.index} type veth peer name mv{self.short}n{n.index} "
                      f"address {self.mac(n.index)} netns {self.ns(n.index)}"),
                     f"link set mv{self.short}h{n.index} master {self.bridge} up",
                     f"neigh replace {n.address} lladdr {self.mac(n.index)} dev {self.bridge} nud permanent"]
        run_ip("-batch", "-", stdin="\n".join(root) + "\n")
        peers = [(self.control_address, self.mac(None))] + [(n.address, self.mac(n.index)) for n in self.nodes]
        batches = {}
        for n in self.nodes:
            inner = [f"link set mv{self.short}n{n.index} name eth0", f"addr add {n.address}/{net.prefixlen} dev eth0",
                     "link set eth0 up", "link set lo up"]
            inner += [f"neigh replace {addr} lladdr {mac} dev eth0 nud permanent" for addr, mac in peers
                      if addr != n.address]
            batches[self.ns(n.index)] = "\n".join(inner) + "\n"
        ip_in_namespaces(batches)
        lines = ["127.0.0.1\tlocalhost", f"{self.control_address}\tmnp-coordinator"]
        lines += [f"{n.address}\t{n.hostname}" for n in self.nodes]
        (self.dir / "hosts").write_text("\n".join(lines) + "\n")
        for n in self.nodes:
            run = self._agent_main if init is None else functools.partial(init, n.index)
            with held_signals():  # a keeper forked is a keeper recorded, for teardown
                self._nodes[n.index] = fork_node(f"/run/netns/{self.ns(n.index)}", n.hostname, self.shm_bytes,
                                                 str(self.dir / "hosts"), str(n.index), run,
                                                 self.node_cpus.get(n.index))
        return self.nodes

    def start_agents(self, handoffs: dict[int, dict[str, Any]]) -> None:
        """Each forked node waits for its handoff on a pipe only it and we hold."""
        for node, handoff in handoffs.items():
            proc = self._nodes[node]
            self._agents[node] = proc  # type: ignore[assignment]
            fd, proc.handoff_fd = proc.handoff_fd, -1
            if not write_all(fd, json.dumps(handoff).encode() + b"\n"):
                rc = proc.wait(1)
                raise ClusterError(f"node{node}: its init ended before it got its handoff"
                                   + (f" (exit code {rc})" if rc is not None else ""))

    def lost(self) -> dict[int, int]:
        return {n: rc for n, p in self._nodes.items() if (rc := p.poll()) is not None}

    def agent_argv(self, node: int) -> list[str]:
        return self.node_argv(node, agent_command())

    def node_argv(self, node: int, command: list[str]) -> list[str]:
        """``command`` as the init of node ``node``: its namespaces, hostname, /dev/shm, /etc/hosts and CPUs."""
        n = self.nodes[node]
        size = f"size={self.shm_bytes}," if self.shm_bytes else ""
        setup = (f"hostname {n.hostname} && mount -t tmpfs -o {size}mode=1777 mnp-shm /dev/shm && "
                 f"mount --bind {self.dir / 'hosts'} /etc/hosts && exec \"$@\"")
        cpus = self.node_cpus.get(node)
        pin = ["taskset", "-c", ",".join(map(str, cpus))] if cpus and shutil.which("taskset") else []
        return [*pin, "ip", "netns", "exec", self.ns(node), "unshare", "--uts", "--ipc", "--pid", "--fork",
                "--kill-child", "--mount-proc", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", setup,
                "mnp-node", *command]

    def teardown(self) -> None:
        """Remove the nodes and everything made for them; safe after any partial ``create``, and idempotent.

        SIGINT, SIGTERM and SIGHUP wait until it is done (a second Ctrl-C must not leave half a cluster)."""
        with held_signals():
            for p in self._nodes.values():
                if p.poll() is None:
                    os.kill(p.pid, signal.SIGTERM)  # the keeper kills and reaps the node's init, then exits
            for p in self._nodes.values():
                p.wait(5)
            for p in self._nodes.values():
                if p.poll() is None:  # last resort: the init follows its keeper by death signal
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait(5)
                if p.handoff_fd >= 0:  # a node that never got its handoff
                    fd, p.handoff_fd = p.handoff_fd, -1
                    os.close(fd)
            veths = [f"mv{self.short}h{i}" for i in range(self.num_nodes)]
            # Also kills what may still run in a namespace: an init whose keeper died before its death signal
            # was set, a helper of an interrupted create.
            _remove(self.short, [self.ns(i) for i in range(self.num_nodes)], [*veths, self.bridge])


class ProcessCluster(Cluster):
    """Fallback without namespaces: every node's agent is a plain process on this machine.

    ``node_cpus`` gives every node all of this process's CPUs and ``cpus_shared`` is True with more than one node
    (see :class:`LocalCluster`): binding ranks to cores inside each "node" would stack them.
    """

    tree_by_default = False  # one machine's CPUs: a star unless --tree-width asks

    warning = "nodes are not isolated (no root or no namespaces): all ranks share this machine's network and /dev/shm"
    probe_ifaces = False

    def __init__(self, job_id: str, num_nodes: int) -> None:
        super().__init__(job_id, num_nodes)
        self.private_root = _private_root(_short(job_id))
        mine = sorted(os.sched_getaffinity(0))
        self.node_cpus: dict[int, list[int]] = {i: list(mine) for i in range(num_nodes)}
        self.cpus_shared: bool = num_nodes > 1

    def create(self, shm_bytes: int | None, progress: Callable[[int, int], None] | None = None) -> list[NodeInfo]:
        import socket

        self.control_address = "127.0.0.1"
        assert self.private_root is not None
        os.makedirs(self.private_root, mode=0o700, exist_ok=True)
        with open(os.path.join(self.private_root, _OWNER), "w") as f:  # a crash's leftover is known for one
            f.write(f"{os.getpid()}\n")
        self.nodes = [NodeInfo(i, socket.gethostname(), "127.0.0.1") for i in range(self.num_nodes)]
        return self.nodes

    def agent_argv(self, node: int) -> list[str]:
        return agent_command()

    def teardown(self) -> None:
        with held_signals():  # a second Ctrl-C waits until every agent is gone
            for p in self._agents.values():
                if p.poll() is None:
                    try:
                        os.killpg(p.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + 3
            for p in self._agents.values():
                try:
                    p.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    p.wait()
        if self.private_root is not None:
            shutil.rmtree(self.private_root, ignore_errors=True)


def local_cluster(job_id: str, num_nodes: int, isolate: bool | None = None) -> Cluster:
    """Isolated nodes where possible; plain processes when asked (``isolate=False``) or when not root."""
    if isolate is False or (isolate is None and not namespaces_available()):
        return ProcessCluster(job_id, num_nodes)
    if not namespaces_available():
        raise ClusterError("isolated local nodes need root, 'ip' (iproute2) and 'unshare' (util-linux)")
    return LocalCluster(job_id, num_nodes)
