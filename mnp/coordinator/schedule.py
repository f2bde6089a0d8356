"""Job dependencies and array scheduling, decided without I/O (AWS Batch's ``dependsOn`` and array jobs).

A job may depend on other jobs (:class:`Dependency`): it waits (PENDING) until each has SUCCEEDED, and fails
without running when one FAILED, was CANCELLED or is gone. Kinds, as in Batch:

- plain (``JOB``): the whole job -- for an array, every child -- waits for the whole of JOB;
- ``N_TO_N`` (``JOB:N_TO_N``): child *i* of this array waits for child *i* of array JOB (same size);
- ``SEQUENTIAL`` (``SEQUENTIAL``, or ``JOB:SEQUENTIAL`` to also wait for JOB): child *i* waits for child *i-1*
  of the same array.

:func:`gate` decides for one job (or one child) from the states of what it waits for; :class:`ArrayScheduler`
decides which children of an array start next: in index order, at most ``max_concurrency`` at once, each on a
free slot (a share of the hosts; local nodes have as many slots as children). The driver
(:mod:`mnp.coordinator.array`) feeds it the states it reads from the records and starts what it says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mnp.spec.depends import Dependency

__all__ = ["Gate", "ArrayScheduler", "gate", "needs_of"]


@dataclass(frozen=True)
class Gate:
    """What a job (or a child) may do now: ``go``; wait (``waiting_for`` says for what); or fail (``failed``)."""

    go: bool
    waiting_for: list[str] = field(default_factory=list)
    failed: str | None = None


def gate(needs: list[str], state_of: Callable[[str], str | None]) -> Gate:
    """``needs``: the job ids waited for. The first that FAILED, was CANCELLED or does not exist fails the job."""
    waiting = []
    for job in needs:
        state = state_of(job)
        if state is None:
            return Gate(False, failed=f"dependency {job} does not exist")
        if state in ("FAILED", "CANCELLED"):
            return Gate(False, failed=f"dependency {job} {state}")
        if state != "SUCCEEDED":
            waiting.append(f"dependency {job} ({state})")
    return Gate(not waiting, waiting)


def needs_of(deps: list[Dependency], parent: str, index: int) -> list[str]:
    """The job ids child ``index`` of array ``parent`` waits for."""
    out = []
    for d in deps:
        if d.kind == "N_TO_N":
            out.append(f"{d.job}:{index}")
        elif d.job:
            out.append(d.job)
        if d.kind == "SEQUENTIAL" and index > 0:
            out.append(f"{parent}:{index - 1}")
    return out


@dataclass
class ArrayScheduler:
    """Which children of array ``parent`` start next. ``slots``: how many children the nodes hold at once (None:
    no limit, as local nodes). States of the array's own children are the scheduler's (told by the driver through
    :meth:`finished`); other jobs' come from ``state_of``."""

    parent: str
    size: int
    max_concurrency: int | None = None
    slots: int | None = None
    deps: list[Dependency] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)  # not started, in index order
    running: dict[int, int] = field(default_factory=dict)  # index -> slot
    states: dict[int, str] = field(default_factory=dict)  # index -> final state
    blocked: dict[int, list[str]] = field(default_factory=dict)  # index -> what it waits for (last decision)

    def __post_init__(self) -> None:
        self.waiting = list(range(self.size))
        self.limit = min(x for x in (self.max_concurrency, self.slots, self.size) if x is not None)

    def _state(self, state_of: Callable[[str], str | None]) -> Callable[[str], str | None]:
        prefix = self.parent + ":"

        def look(job: str) -> str | None:
            if job.startswith(prefix) and job[len(prefix):].isdigit():
                i = int(job[len(prefix):])
                return self.states.get(i, "RUNNING" if i in self.running else "PENDING")
            return state_of(job)
        return look

    def decide(self, state_of: Callable[[str], str | None]) -> tuple[list[tuple[int, int]], list[tuple[int, str]]]:
        """(children to start now as (index, slot), children that fail without running as (index, reason)).
        The caller must report every start (:meth:`started`) and end (:meth:`finished`)."""
        look = self._state(state_of)
        starts: list[tuple[int, int]] = []
        fails: list[tuple[int, str]] = []
        free = [s for s in range(self.limit) if s not in self.running.values()]
        self.blocked = {}
        for i in list(self.waiting):
            g = gate(needs_of(self.deps, self.parent, i), look)
            if g.failed is not None:
                fails.append((i, g.failed))
                self.waiting.remove(i)
                self.states[i] = "FAILED"  # a SEQUENTIAL successor sees it in this same pass
            elif not g.go:
                self.blocked[i] = g.waiting_for
            elif free and len(self.running) + len(starts) < self.limit:
                starts.append((i, free.pop(0)))
            else:
                self.blocked[i] = ["a free slot"]
        return starts, fails

    def started(self, index: int, slot: int) -> None:
        self.waiting.remove(index)
        self.running[index] = slot

    def finished(self, index: int, state: str) -> None:
        self.running.pop(index, None)
        self.states[index] = state

    def withdraw(self, index: int, state: str) -> None:
        """A child not started ended without running (cancelled from another shell): never start it."""
        if index in self.waiting:
            self.waiting.remove(index)
            self.states[index] = state

    def cancel_rest(self) -> list[int]:
        """The children not started: CANCELLED (the array was stopped)."""
        rest, self.waiting = self.waiting, []
        for i in rest:
            self.states[i] = "CANCELLED"
        return rest

    @property
    def done(self) -> bool:
        return not self.waiting and not self.running
