"""Shared by the production recipes (configs/qwen3_*.py): PivotRL's public recipe at 32k context
on a given mesh, with the rollout side on SGLang servers and the architecture the memory plan
(benchmarks/memory_plan.py) compiles without weights. Not a config file of its own."""

import importlib.util
from pathlib import Path

from ml_collections import config_dict

ROWS = 64 * 16  # pivots per step x samples per pivot: one optimizer step per rollout batch

# The rollout side, one SGLang server per 8-GPU node (--enable-return-routed-experts is added
# for MoE models by engine.routed_experts): Qwen3-30B-A3B as 2 data-parallel replicas of
# TP 4 / EP 4; Qwen3-8B as 4 replicas of TP 2.
MOE_SERVER_ARGS = ("--tp-size", "4", "--ep-size", "4", "--dp-size", "2", "--dtype", "bfloat16",
                   "--context-length", "32768", "--mem-fraction-static", "0.85")  # fmt: skip
DENSE_SERVER_ARGS = ("--tp-size", "2", "--dp-size", "4", "--dtype", "bfloat16",
                     "--context-length", "32768", "--mem-fraction-static", "0.85")  # fmt: skip

# Qwen3 architectures as their HF config.json says (the fields ModelConfig reads).
QWEN3_30B_A3B = dict(
    model_type="qwen3_moe",
    vocab_size=151936,
    hidden_size=2048,
    intermediate_size=6144,
    num_hidden_layers=48,
    num_attention_heads=32,
    num_key_value_heads=4,
    head_dim=128,
    rms_norm_eps=1e-6,
    rope_theta=1_000_000.0,
    max_position_embeddings=40960,
    tie_word_embeddings=False,
    num_experts=128,
    num_experts_per_tok=8,
    moe_intermediate_size=768,
    norm_topk_prob=True,
    decoder_sparse_step=1,
    mlp_only_layers=[],
)
QWEN3_8B = dict(
    model_type="qwen3",
    vocab_size=151936,
    hidden_size=4096,
    intermediate_size=12288,
    num_hidden_layers=36,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    rms_norm_eps=1e-6,
    rope_theta=1_000_000.0,
    max_position_embeddings=40960,
    tie_word_embeddings=False,
)


def train_config() -> config_dict.ConfigDict:
    spec = importlib.util.spec_from_file_location(
        "train_config", Path(__file__).with_name("train.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(None)


def production_config(
    name: str,
    hf_config: dict,
    mesh_shape: tuple[int, int, int, int],
    hbm_gib: float,
    accelerator: str,
    server_args: tuple[str, ...],
    model_overrides: dict,
) -> config_dict.ConfigDict:
    """configs/train.py's recipe (G = 16, 64 pivots per step, lr 1e-6, clip 0.2, TIS 5, beta 0,
    router frozen, load-balancing loss 0) at 32k context on `mesh_shape`."""
    c = train_config()
    c.name = name
    c.mesh_shape = mesh_shape
    data_parallel = mesh_shape[0] * mesh_shape[1] * mesh_shape[3]  # rows over data, fsdp, expert
    c.model_overrides = config_dict.ConfigDict(
        dict(dtype="bfloat16", remat="full", moe_dispatch="", moe_chunk=0, attention_chunk=0)
    )
    c.model_overrides.update(model_overrides)
    c.train.pivots_per_step = ROWS // 16
    c.train.micro_batches = ROWS // data_parallel  # one 32k row per device per micro-batch
    c.train.max_prompt_len = 32768 - 2048
    c.train.length_buckets = (4096, 8192, 16384, 32768)
    c.train.reference_dtype = "bfloat16"
    c.rollout.group_size = 16
    c.rollout.max_new_tokens = 2048
    c.engine.name = "sglang"
    c.engine.preset = "gpu"
    c.engine.routed_experts = "num_experts" in hf_config  # routing replay for MoE policies
    c.engine.max_context = 32768
    c.engine.extra_args = server_args
    c.plan = config_dict.ConfigDict(
        dict(hf_config=hf_config, hbm_gib=hbm_gib, accelerator=accelerator)
    )
    return c
