"""Stage 1, the job: a YAML job file (or an AWS Batch job definition) validated into a :class:`JobSpec`.

Modules: :mod:`~mnp.spec.jobspec` (the types), :mod:`~mnp.spec.model` (mnp job files, :func:`load_spec`),
:mod:`~mnp.spec.batchdef` (Batch job definitions), :mod:`~mnp.spec.retry` (retry rules and strategy),
:mod:`~mnp.spec.noderange` (node index sets and ranges), :mod:`~mnp.spec.resolve` (ranges laid out on nodes).
"""

from mnp.spec.jobspec import JobSpec
from mnp.spec.model import load_spec, spec_from_dict
from mnp.spec.noderange import NodeRange, RangeSet
from mnp.spec.resolve import NodeWork, resolve_nodes
from mnp.spec.retry import RetryRule, RetryStrategy, retry_strategy

__all__ = [
           "JobSpec",
           "NodeRange",
           "NodeWork",
           "RangeSet",
           "RetryRule",
           "RetryStrategy",
           "load_spec",
           "resolve_nodes",
           "retry_strategy",
           "spec_from_dict",
]
