"""Qwen3-30B-A3B PivotRL on 2 hosts x 8 H100 80 GB at 32k context.

    # on each host (jax.distributed reads the coordinator from the environment):
    pivotrl train --config=configs/qwen3_30b_a3b_h100.py --config.model_dir=/ckpt/Qwen3-30B-A3B \
        --config.pivots=/data/pivots --config.engine.urls="('http://rollout-0:30000',)" \
        --output /runs/pivotrl-30b
    python benchmarks/memory_plan.py --config configs/qwen3_30b_a3b_h100.py --layers 2,3

Mesh (data, fsdp, tensor, expert) = (1, 2, 1, 8): expert parallelism inside a host (NVLink
all-to-all), ZeRO-3 over both hosts, one 32k row per GPU per micro-batch (64 micro-batches of
16 rows per update). bf16 compute, f32 master weights and Adam, bf16 frozen reference,
per-layer remat, chunked attention and MoE dispatch. Rollouts: SGLang on other nodes
(`engine.urls`), per-token routed experts returned and replayed by the trainer.
"""

import runpy
from pathlib import Path

from ml_collections import config_dict

P = runpy.run_path(str(Path(__file__).with_name("_production.py")))


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    del arg
    return P["production_config"](
        name="qwen3_30b_a3b_h100_2x8",
        hf_config=P["QWEN3_30B_A3B"],
        mesh_shape=(1, 2, 1, 8),
        hbm_gib=80.0,
        accelerator="2 hosts x 8 NVIDIA H100 80GB",
        server_args=P["MOE_SERVER_ARGS"],
        model_overrides=dict(moe_dispatch="expert_parallel", moe_chunk=512, attention_chunk=512),
    )
