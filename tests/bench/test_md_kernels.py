"""bench.md's kernels against a brute-force reference, on one rank (MPI singleton, in a child process).

A 256-atom fcc crystal (box 6.72 sigma: more than twice r_c + skin, so the minimum image is the only image in
range) with every atom displaced at random, then the engine's own path -- cell sort, ghosts, half Verlet list with
Newton's third law, forces on ghosts sent back to their owners -- against O(N^2) minimum-image sums in NumPy:
the list holds every pair within r_c + skin exactly once; the LJ energy, the pair count inside r_c and every
force agree to round-off; the force-only kernel of the steps between energy steps gives the same forces as the
energy kernel; with reaction field too. No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

CHECK = r"""
import json
import numpy as np
from mpi4py import MPI
from bench.md.engine import Engine
from bench.md.system import Params

def reference(pos, q, p, L):
    d = pos[:, None, :] - pos[None, :, :]
    d -= L * np.round(d / L)
    r2 = (d * d).sum(-1)
    np.fill_diagonal(r2, np.inf)
    inside = r2 < p.rc ** 2
    ir2 = np.where(inside, 1.0 / r2, 0.0)
    ir6 = ir2 ** 3
    fs = 24.0 * ir6 * (2.0 * ir6 - 1.0) * ir2
    e_lj = 0.5 * (4.0 * ir6 * (ir6 - 1.0)).sum()
    e_rf = 0.0
    if p.rf:
        qq = q[:, None] * q[None, :] / p.eps_r
        ir = np.sqrt(ir2)
        e_rf = 0.5 * np.where(inside, qq * (ir + p.k_rf * r2 - p.c_rf), 0.0).sum()
        fs = fs + np.where(inside, qq * (ir * ir2 - 2.0 * p.k_rf), 0.0)
    f = (fs[:, :, None] * d).sum(1)
    n_list = int(((r2 < p.rlist ** 2).sum()) // 2)
    return e_lj, int(inside.sum() // 2), e_rf, f, n_list

out = {}
for rf in (False, True):
    p = Params(cells=4, steps=1, rf=rf)
    eng = Engine(MPI.COMM_WORLD, p)
    rng = np.random.default_rng(7)
    eng.state[:, :3] += rng.uniform(-0.12, 0.12, (len(eng.state), 3))
    del eng.pos  # rebuild from state as it is
    eng.rebuild()
    ids = eng.state[:, 7].astype(np.int64)
    eng.force(energy=True)
    e = eng.e
    f_e = eng.f[:eng.nlocal].copy()
    eng.force(energy=False)
    f_plain = eng.f[:eng.nlocal].copy()
    pos = np.empty((p.natoms, 3)); q = np.empty(p.natoms); f_ref_by_id = None
    pos[ids] = eng.pos[:eng.nlocal] % p.box
    q[ids] = eng.q[:eng.nlocal]
    e_lj, npair, e_rf, f_ref, n_list = reference(pos, q, p, p.box)
    pairs = [(int(eng.ids[i]), int(eng.ids[j])) for i in range(eng.nlocal)
             for j in eng.nbr[eng.offs[i]:eng.offs[i + 1]]]
    out["rf" if rf else "lj"] = {
        "e": list(e), "ref": [e_lj, npair, e_rf], "list": int(eng.offs[-1]), "ref_list": n_list,
        "distinct": len({tuple(sorted(x)) for x in pairs}),
        "df": float(np.abs(f_e - f_ref[ids]).max()), "fmax": float(np.abs(f_ref).max()),
        "dplain": float(np.abs(f_plain - f_e).max()), "ghosts": len(eng.pos) - eng.nlocal}
print("CHECK " + json.dumps(out))
"""


def test_kernels_match_brute_force_reference() -> None:
    p = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"},
                       check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.split("CHECK ", 1)[1])
    for key in ("lj", "rf"):
        r = got[key]
        assert r["ghosts"] > 0
        # every pair within r_c + skin, exactly once (owned pairs and pairs with periodic images alike)
        assert r["list"] == r["ref_list"] == r["distinct"], r
        e_lj, npair, e_rf = r["e"]
        assert npair == r["ref"][1]
        assert abs(e_lj - r["ref"][0]) < 1e-10 * abs(r["ref"][0])
        assert abs(e_rf - r["ref"][2]) < 1e-9 * max(abs(r["ref"][2]), 1.0)
        assert r["df"] < 1e-9 * r["fmax"]
        assert r["dplain"] < 1e-9 * r["fmax"]
    assert got["rf"]["ref"][2] != 0.0 and got["lj"]["ref"][2] == 0.0
