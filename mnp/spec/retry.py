"""Retries, AWS Batch's way: the job file's ``retry`` section *is* the strategy the coordinator asks.

``retry`` in an mnp job file decodes straight into a :class:`RetryStrategy` (``attempts``, and
``evaluate_on_exit`` as :attr:`RetryStrategy.rules`); a Batch job definition's ``retryStrategy`` is turned into the
same type by :mod:`mnp.spec.batchdef`. The coordinator calls :func:`retry_strategy` on the job and then
:meth:`RetryStrategy.should_retry` after each failed attempt -- there is no other representation of the rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

if TYPE_CHECKING:
    from mnp.spec.jobspec import JobSpec

__all__ = ["MAX_ATTEMPTS", "MAX_RULES", "RetryRule", "RetryStrategy", "retry_strategy"]

MAX_ATTEMPTS = 10  # Batch's limits
MAX_RULES = 5
MAX_PATTERN = 512

_Pattern = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PATTERN)]
Action = Literal["RETRY", "EXIT", "retry", "exit", "Retry", "Exit"]


class RetryRule(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One ``evaluate_on_exit`` rule (Batch's ``evaluateOnExit`` entry). ``None`` conditions are not checked;
    patterns match exactly, or by prefix when they end in ``*``. ``action`` is kept upper case."""

    action: Action
    on_exit_code: (Annotated[str, msgspec.Meta(pattern=r"\A[0-9]*\*?\Z", min_length=1, max_length=MAX_PATTERN)]
                   | None) = None
    on_reason: _Pattern | None = None
    on_status_reason: _Pattern | None = None

    def __post_init__(self) -> None:
        if self.action not in ("RETRY", "EXIT"):
            msgspec.structs.force_setattr(self, "action", self.action.upper())

    def matches(self, exit_code: int, reason: str) -> bool:
        """All given conditions hold. ``reason`` is matched by both ``on_reason`` and ``on_status_reason``."""
        return (_glob(self.on_exit_code, str(exit_code)) and _glob(self.on_reason, reason)
                and _glob(self.on_status_reason, reason))


def _glob(pattern: str | None, value: str) -> bool:
    if pattern is None:
        return True
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


class RetryStrategy(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """At most ``attempts`` attempts in all; ``rules`` (``evaluate_on_exit`` in a job file) decide which failures
    are tried again."""

    attempts: Annotated[int, msgspec.Meta(ge=1, le=MAX_ATTEMPTS)] = 1
    rules: Annotated[tuple[RetryRule, ...], msgspec.Meta(max_length=MAX_RULES)] = msgspec.field(
        default=(), name="evaluate_on_exit")

    @property
    def evaluate_on_exit(self) -> tuple[RetryRule, ...]:
        """The job file's name for :attr:`rules`."""
        return self.rules

    def should_retry(self, exit_code: int, reason: str, attempt: int) -> bool:
        """Whether attempt number ``attempt`` (1-based), which ended with ``exit_code`` and ``reason``, is retried.

        Batch's rules: a successful attempt (exit code 0) is never retried, nor the last allowed attempt; else the
        first rule whose conditions all match decides (``RETRY`` or ``EXIT``), and when none matches, the job is
        retried. mnp has one reason string per attempt, which both ``on_reason`` and ``on_status_reason`` are
        matched against.
        """
        if exit_code == 0 or attempt >= self.attempts:
            return False
        for rule in self.rules:
            if rule.matches(exit_code, reason):
                return rule.action == "RETRY"
        return True


def retry_strategy(spec: JobSpec) -> RetryStrategy:
    """The job's retry strategy: its ``retry`` section, or one attempt and no rules when it has none."""
    return spec.retry if spec.retry is not None else RetryStrategy()
