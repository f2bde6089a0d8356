"""The array driver: ``--array N`` runs the job N times as children ``<job>:<index>`` (AWS Batch array jobs).

Which child starts when is :class:`~mnp.coordinator.schedule.ArrayScheduler`'s; this module records and runs.
Each child runs through the ordinary coordinator path (:func:`mnp.coordinator.launch`: bring-up, retries,
teardown) in a process of its own, forked from this one, so children run side by side without sharing any
state; the child process adopts the child's record (``mnp cancel JOB:3`` stops that child alone). Its ranks get
``MNP_ARRAY_INDEX`` and ``AWS_BATCH_JOB_ARRAY_INDEX``.

Nodes: on local nodes every child makes its own isolated nodes. With hosts, the hosts are cut into groups of the
child's node count, a group is a slot, and a child runs on a free slot only, so concurrent children never share a
host (``--max-concurrency`` larger than the groups is capped by them).

The parent record: SUBMITTED, PENDING while the array's own dependencies are unfinished, RUNNING from the first
child's start, then SUCCEEDED when every child did, CANCELLED when stopped by a signal, else FAILED. Exit status:
0 when every child succeeded; after a signal 130 (SIGINT) or 128+N; otherwise the exit code of the failed child
with the lowest index, or 1 when that child never ran (a dependency failed). A signal (Ctrl-C, SIGTERM, ``mnp
cancel JOB``) is passed on to the running children as SIGTERM, and the children not started are CANCELLED.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from mnp.coordinator.alerts import Alerts
from mnp.coordinator.engine import EXIT_INTERRUPTED
from mnp.coordinator.events import EventSink, JobCreated, Note
from mnp.coordinator.job import Interrupt, LaunchRequest
from mnp.coordinator.pending import POLL_S, labelled, resolve_dependencies
from mnp.coordinator.schedule import ArrayScheduler
from mnp.coordinator.transit import EXIT_STUCK, TransitWatch
from mnp.errors import MnpError, UsageError
from mnp.records import Records, new_job_id

__all__ = ["ArrayResult", "launch_array"]


@dataclass
class ArrayResult:
    job_id: str
    state: str
    exit_code: int
    reason: str
    wall_s: float
    children: list[dict[str, Any]] = field(default_factory=list)  # index, job_id, state, exit_code, reason

    def indexes(self, state: str) -> list[int]:
        return [c["index"] for c in self.children if c["state"] == state]

    def to_json(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "state": self.state, "exit_code": self.exit_code, "reason": self.reason,
                "wall_s": round(self.wall_s, 3), "children": self.children,
                "succeeded": self.indexes("SUCCEEDED"), "failed": self.indexes("FAILED"),
                "cancelled": self.indexes("CANCELLED")}


def launch_array(req: LaunchRequest, size: int, max_concurrency: int | None,
                 child_events: Callable[[str], EventSink]) -> ArrayResult:
    """Run the array to its end. ``child_events(child_id)`` makes, in the child's process, where that child
    reports (the CLI: a renderer whose lines carry the index)."""
    records = Records(req.home)
    try:
        return _Array(req, size, max_concurrency, child_events, records).run()
    finally:
        records.close()


class _Array:
    def __init__(self, req: LaunchRequest, size: int, max_concurrency: int | None,
                 child_events: Callable[[str], EventSink], records: Records) -> None:
        from mnp.plan import resolve_nodes

        self.records = records
        records.reap_orphans()
        self.n = req.nodes or req.spec.nodes
        self.spec = req.spec.with_nodes(self.n).with_fields(array=None, depends_on=[])
        work = resolve_nodes(self.spec, req.spec_path)  # spec errors before any record
        self.command = self.spec.command or work[0].command
        self.groups: list[list[Any]] | None = None
        if req.hosts is not None:
            if len(req.hosts) < self.n:
                raise UsageError(f"--array: each child needs {self.n} node(s), but only {len(req.hosts)} host(s) "
                                 "given")
            self.groups = [req.hosts[k * self.n:(k + 1) * self.n] for k in range(len(req.hosts) // self.n)]
        self.deps = resolve_dependencies(records, labelled(req.spec.depends_on, req.depends_on), size)
        self.req, self.size, self.child_events = req, size, child_events
        self.job_id = req.job_id or new_job_id()
        self.sched = ArrayScheduler(self.job_id, size, max_concurrency, len(self.groups) if self.groups else None,
                                    self.deps)
        self.alerts = Alerts(TransitWatch(req.spec.transit_timeout, time.monotonic(), time.time(),
                                          req.spec.on_stuck), req.notify, req.events)
        self.pids: dict[int, int] = {}  # child pid -> index
        self.reasons: dict[int, str] = {}
        self.marked_pending: set[int] = set()

    def child_id(self, i: int) -> str:
        return f"{self.job_id}:{i}"

    def run(self) -> ArrayResult:
        t0 = time.monotonic()
        d = self.records.create(self.job_id, self.spec.name, self.n, self.command, self.req.spec_path)
        info = {"array": {"size": self.size, "max_concurrency": self.sched.max_concurrency,
                          "slots": self.sched.limit}, "depends_on": [str(x) for x in self.deps]}
        self.records.update(self.job_id, info=info)
        for i in range(self.size):
            self.records.create(self.child_id(i), self.spec.name, self.n, self.command, self.req.spec_path,
                                parent=self.job_id, array_index=i)
        self.req.events(JobCreated(self.job_id, self.spec.name, str(d)))
        code: int | None = None
        try:
            with Interrupt() as interrupt:
                if self.deps:
                    self.records.transition(self.job_id, "PENDING", "waiting for " + ", ".join(map(str, self.deps)))
                code = self._loop(interrupt)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting for the children to end by themselves
            code = EXIT_INTERRUPTED
            for i in self.sched.cancel_rest():
                self._end_child(i, "CANCELLED", "the array was interrupted by SIGINT")
        finally:
            self._stop_children()
            self.alerts.close()
        return self._finish(t0, code)

    def _loop(self, interrupt: Interrupt) -> int | None:
        """Until every child ended; the exit code of an interrupted or stuck array (None otherwise)."""
        stopped: int | None = None
        last_reap = 0.0
        while not self.sched.done:
            self._reap()
            if interrupt.signum is not None and stopped is None:
                stopped = EXIT_INTERRUPTED if interrupt.signum == signal.SIGINT else 128 + interrupt.signum
                self._signal_children(signal.SIGTERM)
                for i in self.sched.cancel_rest():
                    self._end_child(i, "CANCELLED", f"the array was interrupted by "
                                                    f"{signal.Signals(interrupt.signum).name}")
            if stopped is None:
                now = time.monotonic()
                if now - last_reap > 1:
                    self.records.reap_orphans()
                    last_reap = now
                if self.sched.waiting:  # children cancelled before they started (mnp cancel JOB:i)
                    for i, state in self.records.ended_children(self.job_id).items():
                        self.sched.withdraw(i, state)
                starts, fails = self.sched.decide(self.records.state_of)
                for i, why in fails:
                    self._end_child(i, "FAILED", why)
                for i, slot in starts:
                    self._start(i, slot)
                for i, what in self.sched.blocked.items():
                    if what != ["a free slot"] and i not in self.marked_pending:  # waits for a dependency
                        self.marked_pending.add(i)
                        self.records.transition(self.child_id(i), "PENDING", "waiting for " + ", ".join(what))
                stuck = self._check_stuck(now)
                if stuck is not None:
                    return stuck
            self.alerts.poll()
            time.sleep(POLL_S)
        return stopped

    def _check_stuck(self, now: float) -> int | None:
        """The array's clock runs until its first child starts (each child has its own from then on)."""
        if self.sched.running or self.sched.states or not self.alerts.watch.due(now):
            return None
        first = min(self.sched.blocked, default=None)
        waiting = self.sched.blocked.get(first, []) if first is not None else []
        alert = self.alerts.raise_alert(self.records, self.job_id, self.spec.name, self.state(), waiting)
        if self.alerts.watch.on_stuck != "fail":
            return None
        for i in self.sched.cancel_rest():
            self._end_child(i, "FAILED", alert["line"])
        self.reasons[-1] = alert["line"]
        return EXIT_STUCK

    def state(self) -> str:
        return self.records.state_of(self.job_id) or "SUBMITTED"

    def _end_child(self, i: int, state: str, reason: str) -> None:
        """A child that never ran: its record ends here."""
        self.records.update(self.child_id(i), exit_code=1 if state == "FAILED" else None)
        self.records.transition(self.child_id(i), state, reason)

    # -- children -----------------------------------------------------------------------------------------------
    def _start(self, i: int, slot: int) -> None:
        if self.state() in ("SUBMITTED", "PENDING"):
            self.records.transition(self.job_id, "RUNNING", f"child {i} started")
        self.sched.started(i, slot)
        hosts = self.groups[slot] if self.groups is not None else None
        env = {**self.spec.env, "MNP_ARRAY_INDEX": str(i), "AWS_BATCH_JOB_ARRAY_INDEX": str(i)}
        req = replace(self.req, spec=self.spec.with_fields(env=env), nodes=self.n, hosts=hosts,
                      job_id=self.child_id(i), adopt=True, depends_on=[], stdin="none", stdin_fd=None)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: run it, never return into the parent's code
            os._exit(_child_main(req, self.child_events))
        self.pids[pid] = i

    def _reap(self) -> None:
        for pid, i in list(self.pids.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done == 0:
                continue
            del self.pids[pid]
            state = self.records.state_of(self.child_id(i)) or "FAILED"
            if state not in ("SUCCEEDED", "FAILED", "CANCELLED"):  # it died before it could say how it ended
                code = os.waitstatus_to_exitcode(status)
                self.records.update(self.child_id(i), exit_code=code if code > 0 else 1)
                self.records.transition(self.child_id(i), "FAILED", f"its process ended (status {code}) before "
                                                                    "the child finished")
                state = "FAILED"
            self.sched.finished(i, state)

    def _signal_children(self, signum: int) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def _stop_children(self) -> None:
        """Whatever happened (an exception included): no child process outlives the array's driver."""
        if not self.pids:
            return
        self._signal_children(signal.SIGTERM)
        deadline = time.monotonic() + 60
        while self.pids and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.1)
        self._signal_children(signal.SIGKILL)
        self._reap()

    # -- the end ------------------------------------------------------------------------------------------------
    def _finish(self, t0: float, code: int | None) -> ArrayResult:
        kids = self.records.children(self.job_id)
        children = [{"index": k.array_index, "job_id": k.id, "state": k.state, "exit_code": k.exit_code,
                     "reason": k.reason} for k in kids]
        failed = [c for c in children if c["state"] != "SUCCEEDED"]
        ok = len(children) - len(failed)
        if code is not None and code != EXIT_STUCK:
            state, reason = "CANCELLED", f"interrupted: {ok} of {self.size} children succeeded"
        elif not failed:
            state, code, reason = "SUCCEEDED", 0, f"all {self.size} children succeeded"
        else:
            first = failed[0]
            if code is None:
                code = int(first["exit_code"] or 1)
            state = "FAILED"
            reason = self.reasons.get(-1) or (f"{len(failed)} of {self.size} children did not succeed; first: "
                                              f"child {first['index']} {first['state']}: {first['reason']}")
        wall = time.monotonic() - t0
        self.records.update(self.job_id, exit_code=code, wall_s=wall)
        self.records.transition(self.job_id, state, reason)
        return ArrayResult(self.job_id, state, code, reason, wall, children)


def _child_main(req: LaunchRequest, child_events: Callable[[str], EventSink]) -> int:
    """In the forked child process: one child job through the ordinary path; its exit status."""
    from mnp import interrupts
    from mnp.coordinator.attempts import launch

    interrupts.pending.clear()
    interrupts.catch_early()  # from here a signal is the child's own, taken over by its coordinator
    code = 1
    records = Records()
    try:
        if not records.take(req.job_id or ""):  # cancelled (mnp cancel JOB:i) between the decision and now
            return EXIT_INTERRUPTED
    finally:
        records.close()
    try:
        events = child_events(req.job_id or "")
        req = replace(req, events=events)
        events(JobCreated(req.job_id or "", req.spec.name, ""))
        result = launch(req)
        code = result.exit_code
        if result.state != "SUCCEEDED":
            events(Note("info", f"job {result.job_id} {result.state}: {result.reason} (exit {code})"))
    except MnpError as e:
        sys.stderr.write(f"mnp: error: job {req.job_id}: {e}\n")
        code = e.exit_code
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except BaseException:  # noqa: BLE001 - reported, and the process ends here whatever it was
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return code
