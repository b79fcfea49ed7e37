#!/usr/bin/env bash
# Train on a Cloud TPU pod slice: every worker VM runs the same command; JAX joins them.
#
#   launch/tpu_pod.sh TPU_NAME ZONE ACCELERATOR_TYPE CONFIG WORKDIR
#   e.g. launch/tpu_pod.sh mcjepa-v4 us-central2-b v4-32 configs/mcjepa_convnext_t.py gs://BUCKET/mcjepa/paper
#
# WORKDIR must be a bucket (gs://...) every worker can reach: all processes write
# their shards of each Orbax checkpoint there. Rerunning the command resumes.
# Optional environment: PROJECT (gcloud project), TPU_VERSION (VM runtime,
# default tpu-ubuntu2204-base), SKIP_CREATE=1 (reuse an existing TPU VM),
# DRY_RUN=1 (print the gcloud commands instead of running them).
set -euo pipefail
if [ $# -lt 5 ]; then
  echo "usage: $0 TPU_NAME ZONE ACCELERATOR_TYPE CONFIG[:ARGS] WORKDIR [trainer flags...]" >&2
  exit 2
fi
name="$1"; zone="$2"; accelerator="$3"; config="$4"; workdir="$5"; shift 5
case "$workdir" in
  gs://*) ;;
  *) echo "WORKDIR must be a gs:// path shared by all TPU workers, got: $workdir" >&2; exit 2 ;;
esac
project_flag=()
if [ -n "${PROJECT:-}" ]; then project_flag=(--project "$PROJECT"); fi
tpu=(gcloud compute tpus tpu-vm "${project_flag[@]}")
run() {
  if [ -n "${DRY_RUN:-}" ]; then printf '%s ' "$@"; echo; else "$@"; fi
}
cd "$(dirname "$0")/.."

if [ -z "${SKIP_CREATE:-}" ]; then
  run "${tpu[@]}" create "$name" --zone "$zone" --accelerator-type "$accelerator" \
    --version "${TPU_VERSION:-tpu-ubuntu2204-base}"
fi

# Ship exactly the committed code to every worker.
archive="$(mktemp -d)/mcjepa_jax.tar.gz"
git archive --format=tar.gz -o "$archive" HEAD
run "${tpu[@]}" scp "$archive" "$name":mcjepa_jax.tar.gz --zone "$zone" --worker=all

extra=""
for flag in "$@"; do extra+=" $(printf '%q' "$flag")"; done
remote="set -e; rm -rf mcjepa_jax && mkdir mcjepa_jax && tar xzf mcjepa_jax.tar.gz -C mcjepa_jax"
remote+=" && cd mcjepa_jax && python3 -m venv .venv && . .venv/bin/activate && pip install -q -e . 'jax[tpu]'"
remote+=" && MCJEPA_DISTRIBUTED=1 python -m mcjepa_jax.main --config $(printf '%q' "$config")"
remote+=" --workdir $(printf '%q' "$workdir")$extra"
run "${tpu[@]}" ssh "$name" --zone "$zone" --worker=all --command "$remote"
