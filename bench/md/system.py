"""The simulated system and the potential's constants (LJ units: sigma = epsilon = mass = k_B = 1).

LJ is cut at r_c and shifted to zero there (GROMACS Verlet scheme, potential-shift); the force is the plain LJ
force. LAMMPS's ``pair_style lj/cut`` does not shift, so the run also reports the unshifted pair energy: the two
differ by V(r_c) times the number of pairs within r_c, which the force kernel counts.

Reaction field (GROMACS manual), f = 1 in reduced units: V = q_i q_j / eps_r (1/r + k_rf r^2 - c_rf) with
k_rf = r_c^-3 (eps_rf - eps_r) / (2 eps_rf + eps_r) (eps_rf = 0 means infinity: k_rf = 1 / (2 r_c^3)) and
c_rf = 1/r_c + k_rf r_c^2. The RF correction also applies to self pairs: -c_rf q_i^2 / (2 eps_r) per atom, a
constant (there are no excluded pairs: no bonds). Charges, when ``--rf`` is given: a neutral fcc crystal, +q on
basis sites 0 and 1 of every cubic cell and -q on sites 2 and 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FCC_BASIS = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]])
LAMMPS_IN_LJ_EPAIR = -6.7733681  # in.lj's step-0 E_pair per atom: fcc 0.8442, lj/cut 2.5, unshifted


@dataclass(frozen=True)
class Params:
    cells: int = 20           # fcc cubic cells per side (20 -> 32,000 atoms, as in.lj)
    density: float = 0.8442   # reduced number density (LAMMPS ``lattice fcc 0.8442``)
    rc: float = 2.5
    skin: float = 0.3
    nstlist: int = 20
    dt: float = 0.005         # tau
    steps: int = 100
    temp: float = 1.44
    seed: int = 87287
    rf: bool = False
    charge: float = 0.5
    eps_r: float = 1.0
    eps_rf: float = 0.0       # 0 = infinity, as GROMACS
    nstcalcenergy: int = 10
    decomp: str = "3d"        # 3d (MPI_Dims_create) or x (slabs)

    @property
    def natoms(self) -> int:
        return 4 * self.cells ** 3

    @property
    def lattice_constant(self) -> float:
        return float((4.0 / self.density) ** (1.0 / 3.0))

    @property
    def box(self) -> float:
        return self.cells * self.lattice_constant

    @property
    def rlist(self) -> float:
        return self.rc + self.skin

    @property
    def lj_shift(self) -> float:
        """V_LJ(r_c), subtracted from every pair inside r_c."""
        return 4.0 * (self.rc ** -12 - self.rc ** -6)

    @property
    def k_rf(self) -> float:
        if self.eps_rf == 0.0:
            return 1.0 / (2.0 * self.rc ** 3)
        return (self.eps_rf - self.eps_r) / ((2.0 * self.eps_rf + self.eps_r) * self.rc ** 3)

    @property
    def c_rf(self) -> float:
        return 1.0 / self.rc + self.k_rf * self.rc ** 2


def lattice(p: Params) -> tuple[np.ndarray, np.ndarray]:
    """Positions (N x 3) and charges (N) of the whole crystal, atom id = row, in a fixed order."""
    n = p.cells
    idx = np.stack(np.meshgrid(np.arange(n), np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 1, 3)
    pos = ((idx + FCC_BASIS[None]) * p.lattice_constant).reshape(-1, 3)
    q = np.tile(np.array([1.0, 1.0, -1.0, -1.0]) * (p.charge if p.rf else 0.0), n ** 3)
    return pos, q


def velocities(p: Params) -> np.ndarray:
    """Gaussian velocities for every atom (by id, so identical however the atoms are decomposed), zero total
    momentum, scaled to ``temp`` with 3N - 3 degrees of freedom (as LAMMPS). Not LAMMPS's generator."""
    v = np.random.default_rng(p.seed).normal(size=(p.natoms, 3))
    v -= v.mean(axis=0)
    t = (v * v).sum() / (3 * p.natoms - 3)
    return v * np.sqrt(p.temp / t)


def rf_self_energy(p: Params, q: np.ndarray) -> float:
    return float(-0.5 * p.c_rf / p.eps_r * (q * q).sum()) if p.rf else 0.0
