"""A GROMACS-like molecular-dynamics benchmark run as an mnp job: the same system on shared memory and across
the network, checked against LAMMPS's in.lj step-0 energy.

Modules: ``system`` (lattice, charges, velocities, potential constants), ``kernels`` (the ``@njit`` hot loops),
``domain`` (3-D domain decomposition: migration, ghost borders, halo exchange over mpi4py), ``engine`` (the
registered run: velocity Verlet with a buffered Verlet list, timings, one record), ``report`` (text and the
``MD-JSON`` line), ``compare`` (shm against network through ``mnp launch --json``; with ``--lammps``,
``vs_lammps``: against LAMMPS's in.lj, whose input and output ``lammps`` knows). numba and MPI are imported only
when a run starts.
"""
