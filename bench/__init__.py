"""mnp's benchmark suites, installed with the ``bench`` extra (``pip install 'mnp[bench]'``): ``bench.osu``
(OSU Micro-Benchmarks 7.4 in Python), ``bench.md`` (GROMACS-like MD), and what ``mnp bench`` runs them with
(``jobs``, ``spread``, ``fabric``, ``report``, ``cref``). The job files (``*.yaml``) and the C sources (``c/``)
ship inside this package. Nothing here is imported by the launcher (``mnp/``), except lazily by ``mnp bench``.
"""
