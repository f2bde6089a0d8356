"""Retry rules and strategy (AWS Batch's ``retryStrategy``): parsing from job files and the retry decision."""

from __future__ import annotations

from typing import Any

import pytest

from mnp.errors import SpecError
from mnp.spec.model import spec_from_dict
from mnp.spec.retry import RetryRule, RetryStrategy, retry_strategy

pytestmark = pytest.mark.noroot

# --- from job files ---------------------------------------------------------------------------------------------


def test_no_retry_section_means_one_attempt() -> None:
    spec = spec_from_dict({"command": "x"})
    assert spec.retry is None
    assert retry_strategy(spec) == RetryStrategy(1, ())
    assert retry_strategy(spec).attempts == 1
    assert not retry_strategy(spec).should_retry(1, "", 1)


def test_retry_section_is_the_strategy() -> None:
    """The job file's section decodes straight into the strategy: actions upper case, rules in order."""
    spec = spec_from_dict({"command": "x", "retry": {"attempts": 3, "evaluate_on_exit": [
        {"on_exit_code": "137", "action": "retry"}, {"on_reason": "OOM*", "action": "Exit"},
        {"on_exit_code": "*", "action": "EXIT"}]}})
    want = RetryStrategy(3, (RetryRule("RETRY", on_exit_code="137"), RetryRule("EXIT", on_reason="OOM*"),
                             RetryRule("EXIT", on_exit_code="*")))
    assert spec.retry == want and retry_strategy(spec) is spec.retry
    assert retry_strategy(spec).evaluate_on_exit == want.rules
    assert retry_strategy(spec).should_retry(137, "", 1) and not retry_strategy(spec).should_retry(1, "", 1)


@pytest.mark.parametrize("retry, field, problem", [
    ({"attempts": 0}, "retry.attempts", "must be at least 1, got 0"),
    ({"attempts": 11}, "retry.attempts", "must be at most 10, got 11"),
    ({"attempts": "2"}, "retry.attempts", "must be an integer, got a string"),
    ({"tries": 2}, "retry.tries", "unknown field"),
    ({"evaluate_on_exit": [{"action": "again"}]}, "retry.evaluate_on_exit[0].action",
     "'again' is not one of 'retry', 'exit'"),
    ({"evaluate_on_exit": [{"on_exit_code": "1"}]}, "retry.evaluate_on_exit[0].action", "required field is missing"),
    ({"evaluate_on_exit": [{"action": "exit", "on_exit_code": "1a"}]}, "retry.evaluate_on_exit[0].on_exit_code",
     "'1a' does not match"),
    ({"evaluate_on_exit": [{"action": "exit", "on_exit_code": ""}]}, "retry.evaluate_on_exit[0].on_exit_code",
     "must not be empty"),
    ({"evaluate_on_exit": [{"action": "exit", "on_reason": "x" * 513}]}, "retry.evaluate_on_exit[0].on_reason",
     "is 513 characters long; at most 512 allowed"),
    ({"evaluate_on_exit": [{"action": "exit"}] * 6}, "retry.evaluate_on_exit", "has 6 entries; at most 5 allowed"),
    ({"evaluate_on_exit": {"action": "exit"}}, "retry.evaluate_on_exit", "must be a list, got a map"),
    ({"rules": []}, "retry.rules", "unknown field"),
])
def test_bad_retry_sections(retry: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(SpecError) as e:
        spec_from_dict({"command": "x", "retry": retry}, "job.yaml")
    assert e.value.field == field
    assert e.value.problem.startswith(problem)


# --- the decision -----------------------------------------------------------------------------------------------

EXAMPLE_RETRY = RetryStrategy(3, (
    RetryRule("RETRY", on_status_reason="Host EC2*"),
    RetryRule("RETRY", on_exit_code="137"),
    RetryRule("EXIT", on_reason="CannotPullContainerError*"),
    RetryRule("EXIT", on_exit_code="*"),
))


@pytest.mark.parametrize("strategy, exit_code, reason, attempt, want", [
    # no rules: every failure retries until attempts run out
    (RetryStrategy(3), 1, "", 1, True),
    (RetryStrategy(3), 1, "", 2, True),
    (RetryStrategy(3), 1, "", 3, False),
    (RetryStrategy(3), 1, "", 4, False),
    (RetryStrategy(1), 1, "", 1, False),
    (RetryStrategy(10), 255, "anything", 9, True),
    (RetryStrategy(10), 255, "anything", 10, False),
    # success is never retried
    (RetryStrategy(3), 0, "", 1, False),
    (RetryStrategy(3, (RetryRule("RETRY", on_exit_code="0"),)), 0, "", 1, False),
    # first matching rule decides
    (EXAMPLE_RETRY, 1, "Host EC2 (instance i-0abc) terminated.", 1, True),
    (EXAMPLE_RETRY, 137, "", 1, True),
    (EXAMPLE_RETRY, 137, "", 2, True),
    (EXAMPLE_RETRY, 137, "", 3, False),
    (EXAMPLE_RETRY, 1, "CannotPullContainerError: no such image", 1, False),
    (EXAMPLE_RETRY, 1, "", 1, False),
    (EXAMPLE_RETRY, 2, "Essential container in task exited", 1, False),
    # no rule matches: retry
    (RetryStrategy(2, (RetryRule("EXIT", on_exit_code="1"),)), 2, "", 1, True),
    (RetryStrategy(2, (RetryRule("EXIT", on_exit_code="1"),)), 1, "", 1, False),
    (RetryStrategy(2, (RetryRule("EXIT", on_exit_code="1"),)), 10, "", 1, True),
    # trailing * matches a prefix only
    (RetryStrategy(2, (RetryRule("EXIT", on_exit_code="1*"),)), 10, "", 1, False),
    (RetryStrategy(2, (RetryRule("EXIT", on_exit_code="1*"),)), 1, "", 1, False),
    (RetryStrategy(2, (RetryRule("EXIT", on_exit_code="1*"),)), 21, "", 1, True),
    (RetryStrategy(2, (RetryRule("EXIT", on_exit_code="*"),)), 99, "", 1, False),
    (RetryStrategy(2, (RetryRule("EXIT", on_reason="OutOfMemory*"),)), 1, "OutOfMemoryError: x", 1, False),
    (RetryStrategy(2, (RetryRule("EXIT", on_reason="OutOfMemory"),)), 1, "OutOfMemoryError", 1, True),
    (RetryStrategy(2, (RetryRule("EXIT", on_reason="oom*"),)), 1, "OOM killed", 1, True),
    # all conditions of a rule must hold
    (RetryStrategy(2, (RetryRule("EXIT", "137", "Host*"),)), 137, "Host gone", 1, False),
    (RetryStrategy(2, (RetryRule("EXIT", "137", "Host*"),)), 137, "Other", 1, True),
    (RetryStrategy(2, (RetryRule("EXIT", "137", "Host*"),)), 1, "Host gone", 1, True),
    # a rule with no condition matches everything
    (RetryStrategy(2, (RetryRule("EXIT"),)), 3, "", 1, False),
    (RetryStrategy(2, (RetryRule("RETRY"), RetryRule("EXIT"))), 3, "", 1, True),
    # order matters
    (RetryStrategy(2, (RetryRule("EXIT", on_exit_code="*"), RetryRule("RETRY", on_exit_code="1"))), 1, "", 1, False),
    (RetryStrategy(2, (RetryRule("RETRY", on_exit_code="1"), RetryRule("EXIT", on_exit_code="*"))), 1, "", 1, True),
    # signals as 128+N
    (RetryStrategy(3, (RetryRule("RETRY", on_exit_code="13*"), RetryRule("EXIT"))), 137, "", 1, True),
    (RetryStrategy(3, (RetryRule("RETRY", on_exit_code="13*"), RetryRule("EXIT"))), 143, "", 1, False),
])
def test_should_retry(strategy: RetryStrategy, exit_code: int, reason: str, attempt: int, want: bool) -> None:
    assert strategy.should_retry(exit_code, reason, attempt) is want


def test_retry_strategy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        RetryStrategy(2).attempts = 3  # type: ignore[misc]
