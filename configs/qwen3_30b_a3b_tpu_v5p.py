"""Qwen3-30B-A3B PivotRL on a TPU v5p pod slice at 32k context (95 GiB HBM per chip).

    pivotrl train --config=configs/qwen3_30b_a3b_tpu_v5p.py --config.model_dir=/ckpt/Qwen3-30B-A3B \
        --config.pivots=/data/pivots --config.engine.urls="('http://rollout-0:30000',)" \
        --output /runs/pivotrl-30b
    python benchmarks/memory_plan.py --config configs/qwen3_30b_a3b_tpu_v5p.py --layers 2,3
    python benchmarks/memory_plan.py --config configs/qwen3_30b_a3b_tpu_v5p.py:v5p-128 --layers 2,3

Variants: `v5p-64` (default; 64 TensorCores = 32 chips, 8 hosts) and `v5p-128` (64 chips).
JAX sees one device per v5p chip. Mesh (data, fsdp, tensor, expert): the 128 experts over 8
devices (16 each, token exchange by all-to-all), everything else ZeRO-3 sharded over all
devices; rows over all devices, one 32k row per device per micro-batch. bf16 compute, f32
master weights and Adam, bf16 frozen reference, per-layer remat, attention over 512-query
chunks and the MoE dispatch over 512 positions at a time (both exact). Rollouts: SGLang servers
elsewhere (GPU nodes; `engine.urls`), sampling with per-token routed experts that the trainer
replays; weights reach them through `update_weights_from_disk` on a shared filesystem.
"""

import runpy
from pathlib import Path

from ml_collections import config_dict

P = runpy.run_path(str(Path(__file__).with_name("_production.py")))

MESHES = {"v5p-64": (1, 4, 1, 8), "v5p-128": (1, 8, 1, 8)}


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    variant = arg or "v5p-64"
    if variant not in MESHES:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(MESHES)}")
    return P["production_config"](
        name=f"qwen3_30b_a3b_tpu_{variant}",
        hf_config=P["QWEN3_30B_A3B"],
        mesh_shape=MESHES[variant],
        hbm_gib=95.0,
        accelerator=f"TPU {variant}",
        server_args=P["MOE_SERVER_ARGS"],
        model_overrides=dict(moe_dispatch="expert_parallel", moe_chunk=512, attention_chunk=512),
    )
