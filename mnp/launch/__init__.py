"""Launch back-ends: how the ranks of a planned job are started.

- ``pmi`` (:mod:`mnp.node.pmi`, served by each node's agent): MPICH ranks started directly by mnp's agents, no mpiexec.
- ``mpirun`` (:mod:`.mpirun`): the MPI's own launcher on the main node -- Open MPI's ``mpirun`` (PRRTE), or MPICH's
  Hydra ``mpiexec`` -- whose remote daemons start through mnp's control plane (``mnp-rsh``), not SSH.

:func:`.detect.detect_mpi` tells which MPI a job's program uses, for ``mpi: auto``.
"""
