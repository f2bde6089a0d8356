"""mnp: a multi-node MPI job launcher.

The library API is :func:`mnp.coordinator.job.launch` (a :class:`~mnp.coordinator.job.LaunchRequest` in, a
:class:`~mnp.coordinator.job.JobResult` out) and :func:`mnp.spec.model.load_spec`; the ``mnp`` command is a thin layer over
them (:mod:`mnp.cli.main`). Heavy modules are imported where they are used, so ``mnp --help`` stays instant.
"""

__version__ = "0.1.0"
