"""mnp: a multi-node MPI job launcher.

The library API is :func:`mnp.coordinator.launch` (a :class:`~mnp.coordinator.LaunchRequest` in, a
:class:`~mnp.coordinator.JobResult` out, events to the request's callback) and :func:`mnp.spec.load_spec`; the
``mnp`` command is a thin layer over them (:mod:`mnp.cli`). Heavy modules are imported where they are used, so
``mnp --help`` stays instant.
"""

__version__ = "0.1.0"
