"""Node ranges applied to a node count: which range each node takes its command, env and ranks from.

Ranges are AWS Batch's ``targetNodes``: each names a contiguous span of nodes; a range must be nested in, or
disjoint from, every other (a partial overlap would be ambiguous), no two may name the same nodes, and together
they must cover every node. A node takes its settings from the innermost range around it, then the job's top
level. :func:`resolve_nodes` checks all that in O(r log r) for r ranges and reports a problem under the field
names of the file it came from (:data:`MNP_NAMES` for job files, Batch's own for job definitions).
"""

from __future__ import annotations

from dataclasses import dataclass

from mnp.errors import SpecError
from mnp.spec.jobspec import JobSpec
from mnp.spec.noderange import RangeSet
from mnp.spec.processes import Dependency, ProcessSpec, check_peers

__all__ = ["MNP_NAMES", "FieldNames", "NodeWork", "range_owners", "resolve_nodes"]


@dataclass(frozen=True)
class NodeWork:
    """What one node is asked to run, before its CPU count is known. ``command`` is empty in a job of processes
    only (no ranks anywhere)."""

    index: int
    command: list[str]
    env: dict[str, str]
    ranks_per_node: int | None
    processes: tuple[ProcessSpec, ...] = ()
    ranks_depend_on: tuple[Dependency, ...] = ()


@dataclass(frozen=True)
class FieldNames:
    """How the fields :func:`resolve_nodes` checks are named in the file at hand."""

    ranges: str = "node_ranges"  # path of the list of ranges
    target: str = "target_nodes"  # a range's nodes, relative to the range
    command: str = "command"  # a range's command, relative to the range
    main_node: str = "main_node"

    @property
    def short(self) -> str:
        """The list's own name, as messages mention other ranges (``node_ranges[0]``)."""
        return self.ranges.rsplit(".", 1)[-1]


MNP_NAMES = FieldNames()


def range_owners(spec: JobSpec, source: str | None = None, names: FieldNames = MNP_NAMES) -> list[int | None]:
    """For each of ``spec.nodes`` nodes, the index of the innermost range naming it (``None``: no ranges).
    Raises SpecError for a range past the last node, partial overlaps, duplicates and uncovered nodes."""
    n = spec.nodes
    spans: list[tuple[int, int, int]] = []  # (first node, last node, range index)
    for i, nr in enumerate(spec.node_ranges):
        try:
            nodes = nr.target_nodes.indices(n)
        except ValueError as e:
            raise SpecError(f"{names.ranges}[{i}].{names.target}", str(e), source) from None
        spans.append((nodes.start, nodes.stop - 1, i))
    # Widest first among equal starts: each span is then checked against the innermost open one around it.
    open_: list[tuple[int, int, int]] = []
    for lo, hi, i in sorted(spans, key=lambda s: (s[0], -s[1], s[2])):
        while open_ and open_[-1][1] < lo:
            open_.pop()
        if open_:
            olo, ohi, j = open_[-1]
            a, b = min(i, j), max(i, j)
            if (olo, ohi) == (lo, hi):
                raise SpecError(f"{names.ranges}[{b}].{names.target}",
                                f"names the same nodes as {names.short}[{a}]", source)
            if hi > ohi:
                raise SpecError(f"{names.ranges}[{b}].{names.target}",
                                f"{spec.node_ranges[b].target_nodes} overlaps {names.short}[{a}] "
                                f"({spec.node_ranges[a].target_nodes}) without being nested in it", source)
        open_.append((lo, hi, i))
    owner: list[int | None] = [None] * n
    for lo, hi, i in sorted(spans, key=lambda s: s[0] - s[1]):  # widest first, so nested (narrower) ranges win
        owner[lo:hi + 1] = [i] * (hi - lo + 1)
    if spans:
        missing = RangeSet(k for k, o in enumerate(owner) if o is None)
        if missing:
            raise SpecError(names.ranges, f"node(s) {missing.fold()} are not covered by any range", source)
    return owner


def resolve_nodes(spec: JobSpec, source: str | None = None, names: FieldNames = MNP_NAMES) -> list[NodeWork]:
    """Apply the job's node ranges to ``spec.nodes`` nodes. Raises SpecError naming the field at fault."""
    n = spec.nodes
    if spec.main_node >= n:
        raise SpecError(names.main_node, f"is {spec.main_node}, but the job has {n} node(s) (0..{n - 1})", source)
    if spec.transport == "shm" and n > 1:
        raise SpecError("transport", f"'shm' works within one node only; this job has {n} nodes "
                        "(use 'auto' or 'tcp')", source)
    owners = range_owners(spec, source, names)
    check_peers(spec, owners, source)
    out = []
    ranks = spec.command is not None or any(r.command for r in spec.node_ranges)  # else: processes only
    for node, i in enumerate(owners):
        rng = spec.node_ranges[i] if i is not None else None
        command = (rng.command if rng and rng.command else None) or spec.command
        field = f"{names.ranges}[{i}]." if i is not None else ""
        if not command and ranks:
            raise SpecError(f"{field}{names.command}" if i is not None else "command",
                            f"node {node} has no command (give one here or at the top level)", source)
        procs = (*spec.processes, *(rng.processes if rng else ()))
        after = rng.ranks_depend_on if rng and rng.ranks_depend_on is not None else spec.ranks_depend_on
        if not ranks and not any(p.essential for p in procs):
            raise SpecError(f"{field}processes", f"node {node} has nothing to run: a job without a command needs "
                            "an essential process on every node", source)
        if not ranks and after:
            raise SpecError(f"{field}ranks_depend_on" if rng and rng.ranks_depend_on else "ranks_depend_on",
                            "the job has no command, so no ranks to start", source)
        env = {**spec.env, **(rng.env if rng else {})}
        rpn = (rng.ranks_per_node if rng and rng.ranks_per_node else None) or spec.ranks_per_node
        out.append(NodeWork(node, command or [], env, rpn if ranks else 0, tuple(procs), tuple(after)))
    return out
