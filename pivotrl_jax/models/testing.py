"""Tiny configs and a transformers reference, shared by tests/models and benchmarks/.

`TINY_CONFIGS` covers the features that must match transformers: dense and MoE, tied and untied
heads, `norm_topk_prob` both ways, `mlp_only_layers`, `decoder_sparse_step` 2, head_dim != D/N,
GQA ratios 1, 2 and 4. `build_reference` makes the transformers model for one of them with random
weights (norm scales too, so a swapped norm shows), saves it as an HF folder and returns it.
`random_model` fills a model from numpy instead (XLA's CPU compile of the random initialisers
takes tens of seconds on two cores; tests should not pay it). torch and transformers are
imported only when a reference is built.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.models.stacks import layer_kinds, stack_layers, unstack_layers
from pivotrl_jax.models.transformer import Transformer, forward

_DENSE = dict(
    vocab_size=96, hidden_size=32, intermediate_size=48, rope_theta=10_000.0, rms_norm_eps=1e-6
)
_MOE = dict(_DENSE, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24)

TINY_CONFIGS: dict[str, ModelConfig] = {
    # head_dim 16 != 32 / 8; GQA ratio 4; tied head.
    "dense_tied_gqa4": ModelConfig(
        **_DENSE,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=16,
        tie_word_embeddings=True,
    ),
    # Multi-head attention (GQA ratio 1), head_dim == D / N, untied.
    "dense_untied_mha": ModelConfig(
        **_DENSE, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, head_dim=8
    ),
    "moe_topk_norm": ModelConfig(
        **_MOE,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        norm_topk_prob=True,
    ),
    # head_dim 12 != 32 / 4; top-k probabilities used as they are.
    "moe_topk_raw_mha": ModelConfig(
        **_MOE,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=12,
        norm_topk_prob=False,
    ),
    # Layers 1 and 3 sparse by the step, layer 3 then forced dense: only layer 1 is MoE.
    "moe_step2_mlp_only": ModelConfig(
        **_MOE,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=8,
        norm_topk_prob=True,
        decoder_sparse_step=2,
        mlp_only_layers=(3,),
    ),
    "moe_mlp_only_first": ModelConfig(
        **{**_MOE, "num_experts": 6, "num_experts_per_tok": 3},
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        norm_topk_prob=False,
        mlp_only_layers=(0,),
    ),
    # transformers ties a MoE head as well (SGLang does not: serve MoE untied).
    "moe_tied": ModelConfig(
        **_MOE,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        norm_topk_prob=True,
        tie_word_embeddings=True,
    ),
}


def write_hf_config(config: ModelConfig, model_dir: str | os.PathLike) -> Path:
    path = Path(model_dir)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "config.json", "w") as f:
        json.dump(config.to_hf_config(), f, indent=2)
    return path


def build_reference(
    config: ModelConfig, model_dir: str | os.PathLike, seed: int = 0, weight_scale: float = 0.2
) -> Any:
    """A transformers `*ForCausalLM` with random weights, saved to `model_dir` (float32).

    The config goes through our `to_hf_config` and transformers' `AutoConfig`, so this also
    checks that transformers reads what we write. Weights ~ N(0, weight_scale^2); norm scales
    ~ 1 + N(0, 0.1^2). Returns the torch model in eval mode.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    write_hf_config(config, model_dir)
    hf_config = AutoConfig.from_pretrained(model_dir)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(
        hf_config, attn_implementation="eager", dtype=torch.float32
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(weight_scale * torch.randn_like(p))
    model.eval()
    model.save_pretrained(model_dir)
    return model


def reference_logits(
    model: Any, input_ids: np.ndarray, attention_mask: np.ndarray | None = None
) -> np.ndarray:
    """transformers' logits [B, T, V] as float32 numpy."""
    import torch

    with torch.no_grad():
        out = model(
            input_ids=torch.as_tensor(np.asarray(input_ids), dtype=torch.long),
            attention_mask=None
            if attention_mask is None
            else torch.as_tensor(np.asarray(attention_mask), dtype=torch.long),
        )
    return out.logits.float().numpy()


def random_tokens(config: ModelConfig, batch: int, length: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(
        0, config.vocab_size, (batch, length), dtype=np.int32
    )


def random_model(config: ModelConfig, seed: int = 0, weight_scale: float = 0.2) -> Transformer:
    """A Transformer with the same weight distribution as `build_reference`, from numpy, drawn
    layer by layer (a layer's values do not depend on how layers are stacked)."""
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(seed)
    kinds = layer_kinds(config)
    row = lambda x, r: jax.ShapeDtypeStruct(x.shape[1:], x.dtype)
    per_layer = unstack_layers(nnx.to_pure_dict(abstract), kinds, take=row)

    def draw(path, x):
        if path[-1].key == "scale":  # RMSNorm
            return (1.0 + 0.1 * rng.standard_normal(x.shape)).astype(x.dtype)
        return (weight_scale * rng.standard_normal(x.shape)).astype(x.dtype)

    values = jax.tree_util.tree_map_with_path(draw, per_layer)  # in sorted path order
    nnx.replace_by_pure_dict(abstract, stack_layers(values, kinds, join=jax.numpy.asarray))
    return nnx.merge(graphdef, abstract)


def jitted_logits(model: Transformer) -> Callable[..., np.ndarray]:
    """`(input_ids, positions, attention_mask) -> logits` as numpy, through one jit."""
    graphdef, params = nnx.split(model)
    fn = jax.jit(functools.partial(forward, graphdef))
    return lambda ids, pos, mask: np.asarray(fn(params, ids, pos, mask))
