"""``launch``: a job run to its end, attempt after attempt as its ``retry`` allows.

AWS Batch's rules: a timeout or an interruption is not retried; the first matching ``evaluate_on_exit`` rule
decides (RETRY or EXIT); no matching rule means retry while attempts remain. Spec and usage problems raise before
any node is created.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mnp.coordinator.events import Note
from mnp.coordinator.job import Interrupt, JobResult, LaunchRequest, run_attempt
from mnp.errors import UsageError
from mnp.records import Records
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
    try:
        with Interrupt() as interrupt:
            while True:
                result = run_attempt(req, records, interrupt)
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
        records.close()
