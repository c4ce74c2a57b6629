#!/usr/bin/env bash
# Run one pivotrl command on this machine (CPU, or all local GPUs/TPU chips JAX sees).
#   launch/local.sh train --config=configs/train.py:tiny --config.train.steps=10
# Set SIM_DEVICES=8 to simulate 8 CPU devices (sharding checks; no speed-up).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${SIM_DEVICES:-}" ]]; then
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${SIM_DEVICES}"
  export JAX_PLATFORMS=cpu
fi
exec "${PYTHON:-.venv/bin/python}" -m pivotrl_jax.cli "$@"
