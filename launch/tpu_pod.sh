#!/usr/bin/env bash
# A TPU pod slice: run the same command on every host (one JAX process per host); JAX's own
# multi-host runtime connects them (jax.distributed.initialize() with TPU auto-detection), grain
# shards the data by process, and the mesh spans every chip.
#   gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command \
#     "cd pivotrl-jax && launch/tpu_pod.sh train --config=configs/train.py"
set -euo pipefail
cd "$(dirname "$0")/.."
export PIVOTRL_DISTRIBUTED=1  # commands call jax.distributed.initialize() before touching devices
export TPU_STDERR_LOG_LEVEL="${TPU_STDERR_LOG_LEVEL:-1}"
exec "${PYTHON:-python3}" -m pivotrl_jax.cli "$@"
