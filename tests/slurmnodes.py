"""A real Slurm cluster on this machine for tests and benchmarks: Debian's slurmctld, slurmd and munged, nothing
mocked (recipe and traps: shared/notes/slurm-on-one-machine.md).

Nodes are isolated local nodes made by mnp's own local-cluster code (own network, UTS, IPC, PID and mount
namespaces, named ``node0``...), each with its own /tmp and /run, whose init runs ``slurmd -D`` and reaps what
ends in the node (finished slurmstepds included). One ``munged`` and ``slurmctld`` run on this machine's network,
so host-side ``srun``, ``salloc``, ``sbatch`` and ``sinfo`` reach the controller with ``SLURM_CONF``; the munge
socket is a file path, which every node sees (unix sockets are not tied to a network namespace).

Everything lives in one state directory under /var/tmp (not /tmp: the nodes have their own); :meth:`stop` cancels
the jobs, ends the nodes (their PID namespaces, so every slurmstepd and job process with them), the controller and
munged, and removes the directory. It is safe after a failed :meth:`start` and idempotent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from mnp.cluster.local import LocalCluster
from mnp.records import new_job_id

__all__ = ["SlurmNodes", "slurm_installed"]

BINARIES = ("/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged", "/usr/bin/srun", "/usr/bin/sbatch")
CONTROLLER = "slurmctl"


def slurm_installed() -> bool:
    return all(Path(b).exists() for b in BINARIES)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


class SlurmNodes:
    """``n`` Slurm nodes (``cpus`` CPUs each, as declared to Slurm) and their controller."""

    def __init__(self, n: int, cpus: int = 2, shm_bytes: int = 1 << 30, sshd: bool = False) -> None:
        self.n, self.cpus, self.shm_bytes, self.sshd = n, cpus, shm_bytes, sshd
        self.dir = Path(tempfile.mkdtemp(prefix="mnp-slurm-", dir="/var/tmp"))
        self.dir.chmod(0o755)
        self.cluster = LocalCluster(new_job_id(), n)
        self.conf = self.dir / "etc" / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        for var in [v for v in self.env if v.startswith("SLURM_") and v != "SLURM_CONF"]:
            del self.env[var]  # a test run inside an allocation must not leak it into this cluster's commands
        self.munged: subprocess.Popen[bytes] | None = None
        self.slurmctld: subprocess.Popen[bytes] | None = None
        self.stopped = False

    # -- bring-up ----------------------------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> SlurmNodes:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        for sub in ("etc", "munge", "ctld", "log", "nodes", "work"):
            (self.dir / sub).mkdir(mode=0o700 if sub == "munge" else 0o755)
        for i in range(self.n):
            (self.dir / "nodes" / f"node{i}").mkdir()
        self._start_munged()
        if self.sshd:
            self._ssh_keys()
        self.nodes = self.cluster.create(self.shm_bytes, init=self._node_init)
        self.addresses = [n.address for n in self.nodes]
        if self.sshd:
            self._ssh_client_files()
        self.bridge = self.cluster.control_address
        self._write_config()
        self.slurmctld = subprocess.Popen(  # own UTS namespace: its hostname is the SlurmctldHost name
            ["unshare", "--uts", "--", "/bin/sh", "-c", f"hostname {CONTROLLER} && exec /usr/sbin/slurmctld -D -i",
             ], env=self.env, stdout=subprocess.DEVNULL, stderr=open(self.dir / "log" / "slurmctld.err", "wb"),
            start_new_session=True)
        self.cluster.start_agents({i: {"go": True} for i in range(self.n)})  # each node's init starts slurmd
        self.wait_idle(timeout)

    def _start_munged(self) -> None:
        key = self.dir / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self.munge_socket = self.dir / "munge" / "munge.socket.2"
        self.munged = subprocess.Popen(
            ["/usr/sbin/munged", "-F", "--force", f"--socket={self.munge_socket}", f"--key-file={key}",
             f"--pid-file={self.dir / 'munge' / 'munged.pid'}", f"--log-file={self.dir / 'log' / 'munged.log'}",
             f"--seed-file={self.dir / 'munge' / 'munged.seed'}", "--num-threads=4"],
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "log" / "munged.err", "wb"), start_new_session=True)
        deadline = time.monotonic() + 10
        while not self.munge_socket.exists():
            if self.munged.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"munged did not start: {(self.dir / 'log' / 'munged.err').read_text()}")
            time.sleep(0.02)

    def _write_config(self) -> None:
        d = self.dir
        self.port = _free_port()
        lines = [
            "ClusterName=mnptest", f"SlurmctldHost={CONTROLLER}({self.bridge})", f"SlurmctldPort={self.port}",
            "SlurmdPort=6818", "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge", "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU", "MpiDefault=none",
            "SlurmdParameters=config_overrides", "ReturnToService=2", "MailProg=/bin/true",
            "SchedulerType=sched/builtin", "KillWait=3", "MinJobAge=30", "InactiveLimit=0", "MessageTimeout=10",
            f"StateSaveLocation={d / 'ctld'}", f"SlurmctldPidFile={d / 'ctld' / 'slurmctld.pid'}",
            f"SlurmctldLogFile={d / 'log' / 'slurmctld.log'}", f"SlurmdSpoolDir={d / 'nodes' / '%n'}",
            f"SlurmdPidFile={d / 'nodes' / '%n.pid'}", f"SlurmdLogFile={d / 'log' / 'slurmd.%n.log'}",
            "SlurmctldDebug=info", "SlurmdDebug=info",
        ]
        lines += [f"NodeName=node{i} NodeAddr={a} CPUs={self.cpus} State=UNKNOWN" for i, a in enumerate(self.addresses)]
        lines.append(f"PartitionName=main Nodes=node[0-{self.n - 1}] Default=YES MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n")
        (d / "etc" / "cgroup.conf").write_text("CgroupPlugin=cgroup/v1\n")  # trap 1: no cgroup autodetection
        hosts = ["127.0.0.1\tlocalhost", f"{self.bridge}\t{CONTROLLER} {socket.gethostname()}"]
        hosts += [f"{a}\tnode{i}" for i, a in enumerate(self.addresses)]
        (d / "etc" / "hosts").write_text("\n".join(hosts) + "\n")

    def _node_init(self, node: int, fd: int) -> int:
        """PID 1 of node ``node``: waits for the word to go (the config is written after the nodes exist), gives
        the node its own /tmp and /run and the cluster's hosts file, runs slurmd, and reaps every orphan."""
        from mnp.cluster.nsnode import MS_BIND, _mount

        data = b""
        while chunk := os.read(fd, 4096):
            data += chunk
        os.close(fd)
        if not json.loads(data or b"{}").get("go"):
            return 0
        # The node's own /tmp hides the host's; a checkout that lives under /tmp (CI's clone may) is bound back.
        repo = Path(__file__).resolve().parents[1]
        old_tmp = os.open("/tmp", os.O_PATH | os.O_DIRECTORY) if repo.is_relative_to("/tmp") else None
        _mount("node-tmp", "/tmp", "tmpfs", 0, "mode=1777")
        if old_tmp is not None:
            repo.mkdir(parents=True, exist_ok=True)
            _mount(f"/proc/self/fd/{old_tmp}/{repo.relative_to('/tmp')}", str(repo), None, MS_BIND)
            os.close(old_tmp)
        _mount("node-run", "/run", "tmpfs", 0, "mode=755")
        _mount(str(self.dir / "etc" / "hosts"), "/etc/hosts", None, MS_BIND)
        log = os.open(self.dir / "log" / f"slurmd.node{node}.err", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        slurmd = subprocess.Popen(["/usr/sbin/slurmd", "-D", "-N", f"node{node}"], env=self.env,
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        if self.sshd:
            Path("/run/sshd").mkdir(mode=0o755)  # sshd's privilege-separation directory, in this node's /run
            ssh = self.dir / "ssh"
            cfg = ssh / f"sshd_config{node}"
            addr = self.cluster.nodes[node].address
            cfg.write_text(f"ListenAddress {addr}\nPort 22\nHostKey {ssh / f'hostkey{node}'}\n"
                           f"AuthorizedKeysFile {ssh / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
                           "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                           "PidFile none\nPrintMotd no\nMaxStartups 100\nMaxSessions 100\n")
            subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)], stdin=subprocess.DEVNULL, stdout=log,
                             stderr=log)
        while True:  # init: reap everything; the node ends when slurmd does (or when its keeper kills us)
            pid, status = os.wait()
            if pid == slurmd.pid:
                return os.waitstatus_to_exitcode(status) or 1

    def _ssh_keys(self) -> None:
        from sshnodes import keygen

        ssh = self.dir / "ssh"
        ssh.mkdir(mode=0o700)
        self.client_key = ssh / "id_ed25519"
        (ssh / "authorized_keys").write_text(keygen(self.client_key) + "\n")
        self.host_pubs = [" ".join(keygen(ssh / f"hostkey{i}").split()[:2]) for i in range(self.n)]

    def _ssh_client_files(self) -> None:
        ssh = self.dir / "ssh"
        self.known_hosts = ssh / "known_hosts"
        self.known_hosts.write_text("".join(f"{a} {k}\n" for a, k in zip(self.addresses, self.host_pubs)))
        self.ssh_config = ssh / "ssh_config"  # node names resolve only inside the nodes: map them for this host
        self.ssh_config.write_text("".join(f"Host node{i}\n    HostName {a}\n" for i, a in enumerate(self.addresses)))

    def ssh_args(self) -> list[str]:
        return ["--ssh-user", "root", "--ssh-key", str(self.client_key), "--known-hosts", str(self.known_hosts),
                "--ssh-config", str(self.ssh_config), "--connect-timeout", "5"]

    # -- use ---------------------------------------------------------------------------------------------------
    def run(self, argv: list[str], timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
        """A Slurm command (or anything that should see this cluster) run here, with ``SLURM_CONF`` set."""
        env = {**self.env, **kw.pop("env", {})}  # type: ignore[dict-item]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,  # type: ignore[call-overload]
                              **kw)

    def wait_idle(self, timeout: float = 60) -> None:
        """Until every node is idle (nothing allocated, nothing completing)."""
        deadline = time.monotonic() + timeout
        states = ""
        while time.monotonic() < deadline:
            for p in (self.munged, self.slurmctld):
                if p is not None and p.poll() is not None:
                    raise RuntimeError(f"{p.args[0]} exited: see {self.dir / 'log'}")
            got = self.run(["sinfo", "-h", "-N", "-o", "%N %t"], timeout=20)
            states = got.stdout.strip()
            lines = states.splitlines()
            if got.returncode == 0 and len(lines) == self.n and all(ln.split()[1] == "idle" for ln in lines):
                return
            time.sleep(0.1)
        raise RuntimeError(f"Slurm nodes not idle within {timeout:g}s: {states!r} (logs: {self.dir / 'log'})")

    def steps(self, job_id: str | None = None) -> list[str]:
        """Running steps (``jobid.stepid name``), of one job or of all, except each job's batch and extern steps."""
        args = ["squeue", "-h", "-s", "-o", "%i %j"] + (["-j", job_id] if job_id else [])
        out = self.run(args, timeout=20).stdout.split("\n")
        return [ln for ln in out if ln.strip() and not ln.split()[0].endswith((".batch", ".extern"))]

    def wait_job(self, job_id: str, timeout: float = 120) -> dict[str, str]:
        """Until job ``job_id`` has ended; its fields from ``scontrol show job`` (``JobState``, ``ExitCode``...)."""
        deadline = time.monotonic() + timeout
        fields: dict[str, str] = {}
        while time.monotonic() < deadline:
            out = self.run(["scontrol", "-o", "show", "job", job_id], timeout=20).stdout
            fields = dict(w.split("=", 1) for w in out.split() if "=" in w)
            if fields.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL",
                                          "OUT_OF_MEMORY"):
                return fields
            time.sleep(0.1)
        raise RuntimeError(f"job {job_id} did not end within {timeout:g}s: {fields.get('JobState')}")

    def node_pids(self, node: int) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.cluster.ns(node)], capture_output=True, text=True,
                             check=False).stdout
        return [int(p) for p in out.split()]

    # -- teardown ----------------------------------------------------------------------------------------------
    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        try:
            if self.slurmctld is not None and self.slurmctld.poll() is None:
                self.run(["scancel", "--full", "--quiet", "--user=root"], timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.cluster.teardown()  # the nodes' PID namespaces end: slurmd, slurmstepds, job processes
        for p in (self.slurmctld, self.munged):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
