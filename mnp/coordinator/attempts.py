"""``launch``: a job run to its end, attempt after attempt as its ``retry`` allows.

AWS Batch's rules: a timeout or an interruption is not retried; the first matching ``evaluate_on_exit`` rule
decides (RETRY or EXIT); no matching rule means retry while attempts remain. Spec and usage problems raise before
any node is created.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from mnp.coordinator.alerts import Alerts
from mnp.coordinator.events import JobCreated, Note
from mnp.coordinator.job import Interrupt, JobResult, LaunchRequest, run_attempt
from mnp.coordinator.pending import labelled, resolve_dependencies, wait_for
from mnp.coordinator.transit import TransitWatch
from mnp.errors import UsageError
from mnp.records import Records, new_job_id
from mnp.spec.depends import Dependency
from mnp.spec.retry import retry_strategy

__all__ = ["launch"]


def launch(req: LaunchRequest) -> JobResult:
    """Run one job to its end; returns its result (state SUCCEEDED, FAILED or CANCELLED)."""
    if req.nodes is not None and req.nodes < 1:
        raise UsageError("--nodes: must be at least 1")
    records = Records(req.home)
    for job_id in records.reap_orphans():
        req.events(Note("info", f"job {job_id} was left unfinished by a coordinator that is gone: marked FAILED"))
    strategy = retry_strategy(req.spec)
    history: list[dict[str, Any]] = []
    deps = resolve_dependencies(records, labelled(req.spec.depends_on, req.depends_on), None)
    alerts = Alerts(TransitWatch(req.spec.transit_timeout, time.monotonic(), time.time(), req.spec.on_stuck),
                    req.notify, req.events)
    try:
        with Interrupt() as interrupt:
            if deps:
                req = replace(req, job_id=req.job_id or new_job_id())
                ended = _pending(req, records, deps, alerts, interrupt)
                if ended is not None:
                    return ended
                req = replace(req, adopt=True, info={"depends_on": [str(x) for x in deps]})
            while True:
                result = run_attempt(req, records, interrupt, alerts)
                if result.state != "FAILED" or not result.retryable or \
                        not strategy.should_retry(result.exit_code, result.reason, req.attempt):
                    records.transition(result.job_id, result.state, result.reason)
                    return result
                history.append({"attempt": req.attempt, "exit_code": result.exit_code, "reason": result.reason})
                req.events(Note("info", f"attempt {req.attempt} of {strategy.attempts} failed ({result.reason}); "
                                        "trying again"))
                records.transition(result.job_id, "RUNNABLE", f"attempt {req.attempt + 1}: after {result.reason}")
                req = replace(req, attempt=req.attempt + 1, job_id=result.job_id, info={"attempts": history})
    finally:
        alerts.close()
        records.close()


def _pending(req: LaunchRequest, records: Records, deps: list[Dependency], alerts: Alerts,
             interrupt: Interrupt) -> JobResult | None:
    """The job recorded and PENDING until its dependencies succeeded (None: run it now), or its end without
    running (a dependency failed, a signal, stuck with ``on_stuck: fail``)."""
    from mnp.plan import resolve_nodes

    assert req.job_id is not None
    nodes = req.nodes or (len(req.hosts) if req.hosts else None)
    spec = req.spec.with_nodes(nodes) if nodes else req.spec
    work = resolve_nodes(spec, req.spec_path)  # spec errors before the record, as for any job
    t0 = time.monotonic()
    d = records.create(req.job_id, spec.name, spec.nodes, spec.command or work[0].command, req.spec_path)
    records.update(req.job_id, info={"depends_on": [str(x) for x in deps]})
    req.events(JobCreated(req.job_id, spec.name, str(d)))
    failure = wait_for(records, req.job_id, spec.name, [x.job for x in deps], alerts, lambda: interrupt.signum)
    if failure is None:
        return None
    state = "CANCELLED" if failure.cancelled else "FAILED"
    wall = time.monotonic() - t0
    records.update(req.job_id, exit_code=failure.exit_code, wall_s=wall)
    records.transition(req.job_id, state, failure.reason)
    return JobResult(req.job_id, state, failure.exit_code, failure.reason, wall, [], str(d))
