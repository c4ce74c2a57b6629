#!/usr/bin/env bash
# One multi-GPU host: one JAX process drives every local GPU; the mesh spans them all.
#   launch/gpu_host.sh train --config=configs/train.py --config.mesh.shape='(1,-1,1,1)'
# Rollouts go to the in-process engine, or to SGLang servers started with launch/sglang_server.sh
# (set --config.engine.name=sglang --config.engine.urls='("http://127.0.0.1:30000",)').
set -euo pipefail
cd "$(dirname "$0")/.."
# Let XLA take most of the memory up front but leave room for an SGLang server on the same GPUs
# when one shares them (lower PIVOTRL_MEM_FRACTION then).
export XLA_PYTHON_CLIENT_MEM_FRACTION="${PIVOTRL_MEM_FRACTION:-0.85}"
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
exec "${PYTHON:-python}" -m pivotrl_jax.cli "$@"
