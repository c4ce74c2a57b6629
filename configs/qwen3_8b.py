"""Dense Qwen3-8B PivotRL on one host of 8 H100 80 GB at 32k context.

    pivotrl train --config=configs/qwen3_8b.py --config.model_dir=/ckpt/Qwen3-8B \
        --config.pivots=/data/pivots --config.engine.urls="('http://rollout-0:30000',)" \
        --output /runs/pivotrl-8b
    python benchmarks/memory_plan.py --config configs/qwen3_8b.py --layers 2,3  # 8 devices

Mesh (data, fsdp, tensor, expert) = (1, 2, 4, 1): tensor parallelism over 4 GPUs (heads, MLP
width, vocab; NVLink) and ZeRO-3 over 2 such groups, one 32k row per group per micro-batch (512
micro-batches of 2 rows). On pure FSDP (1, 8, 1, 1) the memory plan finds the dense MLP's
[rows, T, F] activations replicated over the fsdp axis by XLA's sharding propagation (124 GiB
per device at 32k; docs/scaling.md). bf16 compute, f32 master weights and Adam, bf16 frozen
reference, per-layer remat, attention over 512-query chunks. Rollouts: SGLang on other nodes
(`engine.urls`).
"""

import runpy
from pathlib import Path

from ml_collections import config_dict

P = runpy.run_path(str(Path(__file__).with_name("_production.py")))


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    del arg
    return P["production_config"](
        name="qwen3_8b_h100_1x8",
        hf_config=P["QWEN3_8B"],
        mesh_shape=(1, 2, 4, 1),
        hbm_gib=80.0,
        accelerator="8 NVIDIA H100 80GB",
        server_args=P["DENSE_SERVER_ARGS"],
        model_overrides=dict(attention_chunk=512),
    )
