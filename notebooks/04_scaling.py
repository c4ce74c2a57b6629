# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Scaling: meshes, logical axis rules and what lands on each device
#
# The policy, the frozen reference and the trainer batch live on one device mesh with four named
# axes, `(data, fsdp, tensor, expert)`. Each parameter names its dimensions with *logical* axes
# (`embed`, `mlp`, `heads`, `experts`, ...); a table of rules maps logical axes to mesh axes.
# This notebook runs on 8 simulated CPU devices (the same programs a pod runs, without the
# speed): it builds meshes from config shapes, resolves the rules for a tiny model and for a
# Qwen3-30B-A3B-sized one, counts the parameter bytes each device holds, and plans the memory of
# a whole train step ahead of time.

# %%
import os

# 8 simulated CPU devices; must be set before jax is imported (a fresh kernel).
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ["JAX_PLATFORMS"] = "cpu"
from pathlib import Path

os.chdir(Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd())

import jax
import numpy as np
from flax import nnx

from pivotrl_jax.config import mesh_from_config
from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.models.sharding import MESH_AXES, ShardingRules, logical_to_spec, param_shardings
from pivotrl_jax.models.testing import TINY_CONFIGS
from pivotrl_jax.train.state import abstract_model

print(jax.device_count(), "devices:", jax.devices()[:2], "...")

# %% [markdown]
# ## Meshes from config shapes
# `mesh_shape` in a command config is `(data, fsdp, tensor, expert)`; one `-1` takes whatever
# devices are left. `(1, -1, 1, 1)` (the default) is pure FSDP: parameters and optimizer state
# split 8 ways, each device computing on its own rows of the batch.

# %%
meshes = {
    "fsdp 8": mesh_from_config((1, -1, 1, 1), MESH_AXES),
    "data 2 x fsdp 4": mesh_from_config((2, -1, 1, 1), MESH_AXES),
    "fsdp 2 x tensor 2 x expert 2": mesh_from_config((1, 2, 2, 2), MESH_AXES),
}
for name, mesh in meshes.items():
    print(f"{name:30} {dict(mesh.shape)}  device ids: {mesh.device_ids.reshape(-1).tolist()}")

# %% [markdown]
# ## Logical axis rules
# The default `ShardingRules`: FSDP on `embed`, tensor parallelism on heads, MLP and vocab,
# expert parallelism on `experts`, and trainer rows (`batch`) over data, fsdp and expert. A
# dimension the mesh axes do not divide stays whole: 2 KV heads on a 4-way tensor axis are
# replicated rather than split unevenly.

# %%
rules = ShardingRules()
for logical in ("batch", "vocab", "embed", "heads", "kv_heads", "mlp", "experts"):
    print(f"{logical:9} -> {rules.mesh_axes(logical)}")
tp4 = mesh_from_config((1, 2, 4, 1), MESH_AXES)
print("q  [D, N, H]:", logical_to_spec(("embed", "heads", "head_dim"), (64, 8, 16), tp4, rules))
print("kv [D, K, H]:", logical_to_spec(("embed", "kv_heads", "head_dim"), (64, 2, 16), tp4, rules))
print("rows [B, T]:", logical_to_spec(("batch", None), (16, 128), tp4, rules))

# %% [markdown]
# ## A tiny MoE, parameter by parameter
# Every parameter's logical axes and the PartitionSpec they resolve to on the mixed mesh.

# %%
tiny = TINY_CONFIGS[next(k for k in TINY_CONFIGS if TINY_CONFIGS[k].num_experts)]
_, abstract = abstract_model(tiny)
mixed = meshes["fsdp 2 x tensor 2 x expert 2"]
specs = param_shardings(abstract, mixed)
for path, var in list(nnx.to_flat_state(abstract))[:12]:
    name = ".".join(map(str, path))
    logical = var.get_metadata().get("logical_axes")
    spec = dict(nnx.to_flat_state(specs))[path].spec
    print(f"{name:42} {tuple(var.shape)!s:18} {logical!s:28} {spec}")


# %% [markdown]
# ## What each device holds
# Parameter bytes per device follow from the shapes and the shardings alone: no weight is
# created. For a model of Qwen3-30B-A3B's shape (48 layers, D 2048, 128 experts of width 768,
# 8 of them per token) in bfloat16, the policy alone is ~61 GB. FSDP over 8 devices leaves an
# eighth on each; a data axis replicates (data 2 x fsdp 4 holds a quarter); tensor and expert
# axes split too, and the mix decides what each step communicates.


# %%
def bytes_per_device(config: ModelConfig, mesh, dtype_bytes: int) -> float:
    _, abstract = abstract_model(config)
    shardings = dict(nnx.to_flat_state(param_shardings(abstract, mesh)))
    total = 0
    for path, var in nnx.to_flat_state(abstract):
        total += np.prod(shardings[path].shard_shape(var.shape)) * dtype_bytes
    return float(total)


big = ModelConfig(
    vocab_size=151936,
    hidden_size=2048,
    intermediate_size=6144,
    num_hidden_layers=48,
    num_attention_heads=32,
    num_key_value_heads=4,
    head_dim=128,
    num_experts=128,
    num_experts_per_tok=8,
    moe_intermediate_size=768,
)
whole = sum(np.prod(v.shape) * 2 for _, v in nnx.to_flat_state(abstract_model(big)[1]))
print(f"policy parameters, bfloat16: {whole / 1e9:.1f} GB")
for name, mesh in meshes.items():
    per = bytes_per_device(big, mesh, 2)
    print(f"{name:30} {per / 1e9:6.2f} GB per device (x{whole / per:.1f} smaller than one copy)")

# %% [markdown]
# Adam's two moments in float32 add 4 bytes per parameter twice (and float32 master weights,
# when training in bfloat16, 4 more), the frozen reference one more copy; activations depend on
# rows and length. `pivotrl train` places all of them on the same mesh with the same rules; the
# launch scripts (`launch/`) start one process per host so the mesh spans every chip
# (docs/multihost.md).

# %% [markdown]
# ## The memory plan: a whole train step compiled without weights
# `benchmarks/memory_plan.py` builds what `pivotrl train` builds for a config (policy, frozen
# reference, optimizer, the jitted train step and log-prob pass, a batch of the longest length
# bucket with its replayed experts) from `ShapeDtypeStruct`s with their shardings, compiles both
# programs ahead of time and reads XLA's memory analysis: the resident state per device is
# exact, the temporaries are XLA:CPU's buffer plan. Here the 2 x 8 H100 recipe
# (`configs/qwen3_30b_a3b_h100.py`) runs a small MoE of the same kind with rows of 512 tokens
# on the 8 simulated devices; [docs/scaling.md](../docs/scaling.md) has the shipped configs'
# numbers at 32k context.

# %%
import runpy

from pivotrl_jax.config import load_config

memory_plan = runpy.run_path("benchmarks/memory_plan.py")
small_moe = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                 num_attention_heads=8, num_key_value_heads=2, head_dim=32, vocab_size=4096,
                 num_experts=16, num_experts_per_tok=4, moe_intermediate_size=128)  # fmt: skip
overrides = [f"plan.hf_config.{k}={v}" for k, v in small_moe.items()] + [
    "mesh_shape=(1,2,1,4)",  # fsdp 2 x expert 4
    "train.pivots_per_step=4",
    "rollout.group_size=4",
    "train.micro_batches=2",
    "train.max_prompt_len=384",
    "rollout.max_new_tokens=128",
    "train.length_buckets=(512,)",
    "model_overrides.moe_chunk=256",
    "model_overrides.attention_chunk=256",
]
small = load_config("configs/qwen3_30b_a3b_h100.py", overrides)
compiled = memory_plan["plan"](small)
print("batch:", compiled["batch_shape"])
for key, value in compiled["per_device_bytes"].items():
    print(f"{key:16} {value / 2**20:8.2f} MiB per device")

# %% [markdown]
# At production depth XLA:CPU's compile of every layer needs more host memory than a laptop
# has, so `--layers A,B` compiles at two shallow depths and puts the temporaries on the line
# through them: the layers run as one `lax.scan` with per-layer remat, so what grows with depth
# (saved layer inputs, gradient buffers) grows by the same bytes per layer. For this config,
# `memory_plan["plan"](small, (2, 3))` gives the 4-layer temporaries from 2- and 3-layer compiles
# (a test, `tests/train/train_memory_plan_test.py`, holds such a line within 1% of the full
# compile); docs/scaling.md plans the 48-layer configs this way.
