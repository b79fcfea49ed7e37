#!/usr/bin/env bash
# Train on this machine with every local accelerator (or the CPU).
#   launch/local.sh CONFIG WORKDIR        e.g. launch/local.sh configs/mcjepa_convnext_t.py workdirs/paper
# Rerunning the same command resumes from the newest checkpoint in WORKDIR.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG[:ARGS] WORKDIR [trainer flags...]" >&2
  exit 2
fi
config="$1"; workdir="$2"; shift 2
cd "$(dirname "$0")/.."
exec python -m mcjepa_jax.main --config "$config" --workdir "$workdir" "$@"
