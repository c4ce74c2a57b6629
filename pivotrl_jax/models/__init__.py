"""Qwen3 dense and Qwen3-MoE decoders in Flax NNX, their sharding and their checkpoints.

Entry points (everything else in this package is an implementation detail):

Build or load, placed on a mesh:
    config = ModelConfig(...)  or  ModelConfig.from_hf_config(json.load(...), dtype="bfloat16")
    mesh = make_mesh((1, 2, 4, 1))              # axes MESH_AXES = (data, fsdp, tensor, expert)
    model = create_sharded(lambda: Transformer(config, rngs=nnx.Rngs(0)), mesh)
    model, config = load_model(dir, mesh=mesh, dtype="bfloat16", param_dtype="float32")
                                                # HF safetensors folder or native orbax folder
Run:
    logits, _ = model(input_ids, positions, attention_mask)      # [B, T, V] float32
    attention_mask: 0 = padding, 1 = token (1, 2, ... number packed sequences)
    graphdef, params = nnx.split(model)
    logits = forward(graphdef, params, input_ids, positions, attention_mask)  # pure, for jit/grad
Decode with an explicit cache (a pytree; carry it through jit / lax loops):
    cache = KVCache.init(config, batch, max_length)
    logits, cache = forward_with_cache(graphdef, params, prompt_ids, positions, mask, cache)
    logits, cache = forward_with_cache(graphdef, params, next_ids[:, None], next_pos, ones, cache)
Shard:
    param_shardings(nnx.state(model), mesh, rules) -> NamedSharding per parameter;
    ShardingRules (logical axis -> mesh axes), activation_sharding, cache_shardings.
Save:
    export_hf(model_or_params, config, out_dir, max_shard_bytes=..., dtype=...)  # transformers,
                                                                                 # SGLang
    save_native(model, config, out_dir)                                          # orbax
"""

from pivotrl_jax.models.config import ModelConfig, ModelConfigError
from pivotrl_jax.models.kv_cache import KVCache, cache_shardings
from pivotrl_jax.models.native import is_native, load_model, load_native, save_native
from pivotrl_jax.models.sharding import (
    DEFAULT_RULES,
    MESH_AXES,
    ShardingRules,
    activation_sharding,
    create_sharded,
    make_mesh,
    param_shardings,
)
from pivotrl_jax.models.transformer import (
    Transformer,
    default_positions,
    forward,
    forward_with_cache,
)
from pivotrl_jax.models.weights import WeightsError, export_hf, load_hf, read_config

__all__ = [
    "DEFAULT_RULES",
    "MESH_AXES",
    "KVCache",
    "ModelConfig",
    "ModelConfigError",
    "ShardingRules",
    "Transformer",
    "WeightsError",
    "activation_sharding",
    "cache_shardings",
    "create_sharded",
    "default_positions",
    "export_hf",
    "forward",
    "forward_with_cache",
    "is_native",
    "load_hf",
    "load_model",
    "load_native",
    "make_mesh",
    "param_shardings",
    "read_config",
    "save_native",
]
