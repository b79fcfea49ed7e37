#!/usr/bin/env bash
# The README demo: sets up .venv, installs mcjepa_jax, trains the demo MC-JEPA on the
# embedded generated dataset, evaluates it and writes pictures to workdirs/demo.
# Extra arguments go to the trainer; rerunning resumes from the last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MCJEPA_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
. "$VENV/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e .
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# XLA:CPU takes each step's temporary buffer afresh from glibc, which maps it anew (a worker thread's
# arena) and unmaps it after the step, so the kernel faults in and zeroes its pages every step. Backed by
# transparent huge pages (glibc >= 2.35; ignored elsewhere) the demo runs 10 % faster with the same
# numbers (docs/benchmarks.md, "Fresh pages every step").
case "${GLIBC_TUNABLES:-}" in
  *glibc.malloc.hugetlb*) ;;
  *) export GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.hugetlb=1" ;;
esac
python -m mcjepa_jax.main --config configs/demo.py --workdir "${MCJEPA_WORKDIR:-workdirs/demo}" "$@"
echo "Pictures: ${MCJEPA_WORKDIR:-workdirs/demo}/pictures   TensorBoard: tensorboard --logdir ${MCJEPA_WORKDIR:-workdirs/demo}"
