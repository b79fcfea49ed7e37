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
python -m mcjepa_jax.main --config configs/demo.py --workdir "${MCJEPA_WORKDIR:-workdirs/demo}" "$@"
echo "Pictures: ${MCJEPA_WORKDIR:-workdirs/demo}/pictures   TensorBoard: tensorboard --logdir ${MCJEPA_WORKDIR:-workdirs/demo}"
