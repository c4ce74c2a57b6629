"""The Qwen3 / Qwen3-MoE decoder, and the pure forward the trainer jits.

    logits, cache = model(input_ids, positions, attention_mask, cache=None)

input_ids, positions: [B, T] int; attention_mask: [B, T] int, 0 for padding, 1 for a token
(or 1, 2, ... numbering packed sequences: see attention.py); cache: a `KVCache` or None.
logits: [B, T, V] float32; cache: the updated cache, or None when none was given.

>>> from pivotrl_jax.models.config import ModelConfig
>>> cfg = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
...                   num_attention_heads=4, num_key_value_heads=2, head_dim=8)
>>> model = Transformer(cfg, rngs=nnx.Rngs(0))
>>> ids = jnp.zeros((2, 5), jnp.int32)
>>> logits, _ = model(ids, jnp.broadcast_to(jnp.arange(5), (2, 5)), jnp.ones((2, 5), jnp.int32))
>>> logits.shape, logits.dtype
((2, 5, 64), dtype('float32'))
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from pivotrl_jax.models.attention import Attention
from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.models.kv_cache import KVCache
from pivotrl_jax.models.layers import RMSNorm, SwiGLU, normal_init
from pivotrl_jax.models.moe import MoEBlock
from pivotrl_jax.models.moe_routing import RouterStats
from pivotrl_jax.registry import Registry

Array = jax.Array

# Per-layer rematerialisation: what the backward pass may keep from the forward pass.
REMAT_POLICIES: Registry = Registry("remat policy")
REMAT_POLICIES.register("full", jax.checkpoint_policies.nothing_saveable)
REMAT_POLICIES.register("dots", jax.checkpoint_policies.dots_with_no_batch_dims_saveable)


class DecoderLayer(nnx.Module):
    """x + attn(norm(x)), then h + mlp(norm(h)); the MLP is dense SwiGLU or the MoE block."""

    def __init__(self, config: ModelConfig, layer: int, *, rngs: nnx.Rngs):
        c = config
        kw = dict(dtype=c.compute_dtype, param_dtype=c.storage_dtype, rngs=rngs)
        self.input_norm = RMSNorm(c.hidden_size, axis_name="embed", eps=c.rms_norm_eps, **kw)
        self.attn = Attention(
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.head_dim,
            rope_theta=c.rope_theta,
            eps=c.rms_norm_eps,
            chunk=c.attention_chunk,
            **kw,
        )
        self.post_attn_norm = RMSNorm(c.hidden_size, axis_name="embed", eps=c.rms_norm_eps, **kw)
        if c.is_moe_layer(layer):
            self.mlp = MoEBlock(
                c.hidden_size,
                c.moe_intermediate_size,
                c.num_experts,
                c.num_experts_per_tok,
                norm_topk_prob=c.norm_topk_prob,
                dispatch=c.moe_dispatch,
                chunk=c.moe_chunk,
                router_trainable=c.router_trainable,
                **kw,
            )
        else:
            self.mlp = SwiGLU(c.hidden_size, c.intermediate_size, **kw)
        self.is_moe = c.is_moe_layer(layer)

    def __call__(
        self,
        x,
        positions,
        segment_ids,
        kv_positions,
        kv_segment_ids,
        cache_kv=None,
        cache_index=None,
        replayed=None,  # [B, T, R] experts to force (MoE layers), NOT_REPLAYED = router's own
    ):
        h, cache_kv = self.attn(
            self.input_norm(x),
            positions,
            segment_ids,
            kv_positions,
            kv_segment_ids,
            cache_kv,
            cache_index,
        )
        x = x + h
        if not self.is_moe:
            return x + self.mlp(self.post_attn_norm(x)), cache_kv, None
        y, stats = self.mlp(self.post_attn_norm(x), segment_ids != 0, replayed)
        return x + y, cache_kv, stats


class Transformer(nnx.Module):
    """Token embedding, `num_hidden_layers` decoder layers, final RMSNorm, output head."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        c = self.config = config
        V, D = c.vocab_size, c.hidden_size
        self.embedding = nnx.Param(
            normal_init(("vocab", "embed"))(rngs.params(), (V, D), c.storage_dtype)
        )
        self.layers = nnx.List([DecoderLayer(c, i, rngs=rngs) for i in range(c.num_hidden_layers)])
        self.final_norm = RMSNorm(
            D,
            axis_name="embed",
            eps=c.rms_norm_eps,
            dtype=c.compute_dtype,
            param_dtype=c.storage_dtype,
            rngs=rngs,
        )
        if not c.tie_word_embeddings:
            self.lm_head = nnx.Param(
                normal_init(("embed", "vocab"))(rngs.params(), (D, V), c.storage_dtype)
            )

    def __call__(
        self,
        input_ids: Array,  # [B, T]
        positions: Array,  # [B, T]
        attention_mask: Array,  # [B, T]; 0 = padding, else a segment id
        cache: KVCache | None = None,
    ) -> tuple[Array, KVCache | None]:
        logits, cache, _ = self.run(input_ids, positions, attention_mask, cache)
        return logits, cache

    def run(
        self,
        input_ids: Array,  # [B, T]
        positions: Array,  # [B, T]
        attention_mask: Array,  # [B, T]; 0 = padding, else a segment id
        cache: KVCache | None = None,
        routed_experts: Array | None = None,  # [B, T, L, R] experts to replay; -1: the router's
    ) -> tuple[Array, KVCache | None, RouterStats | None]:
        """`__call__`, replaying `routed_experts` in the MoE layers (L entries: one per MoE layer
        or one per layer), and returning what the L_moe routers did: RouterStats stacked over
        the MoE layers ([L_moe, ...]; None for a dense model)."""
        c = self.config
        T = input_ids.shape[1]
        segment_ids = attention_mask.astype(jnp.int32)
        x = jnp.take(self.embedding[...], input_ids, axis=0).astype(c.compute_dtype)  # [B, T, D]
        if cache is None:
            kv_positions, kv_segment_ids, index = positions, segment_ids, None
        else:
            index = cache.index
            cache = cache.write_tokens(positions, segment_ids)
            kv_positions, kv_segment_ids = cache.positions, cache.segment_ids  # [B, S]
        call = DecoderLayer.__call__
        if c.remat != "none":
            call = nnx.remat(call, policy=REMAT_POLICIES.get(c.remat))
        ks, vs, stats = [], [], []
        for i, layer in enumerate(self.layers):
            layer_kv = None if cache is None else (cache.k[i], cache.v[i])
            replayed = None
            if routed_experts is not None and layer.is_moe:
                # One entry per layer (SGLang's layout) or per MoE layer.
                every_layer = routed_experts.shape[2] == c.num_hidden_layers
                replayed = routed_experts[:, :, i if every_layer else len(stats)]  # [B, T, R]
            x, layer_kv, layer_stats = call(
                layer,
                x,
                positions,
                segment_ids,
                kv_positions,
                kv_segment_ids,
                layer_kv,
                index,
                replayed,
            )
            if layer_stats is not None:
                stats.append(layer_stats)
            if layer_kv is not None:
                ks.append(layer_kv[0])
                vs.append(layer_kv[1])
        x = self.final_norm(x)
        # Output logits accumulate and return in float32.
        if c.tie_word_embeddings:
            logits = jnp.einsum(
                "BTD,VD->BTV",
                x,
                self.embedding[...].astype(x.dtype),
                preferred_element_type=jnp.float32,
            )
        else:
            logits = jnp.einsum(
                "BTD,DV->BTV",
                x,
                self.lm_head[...].astype(x.dtype),
                preferred_element_type=jnp.float32,
            )
        if cache is not None:
            cache = cache.advance(ks, vs, T)
        stacked = jax.tree.map(lambda *a: jnp.stack(a), *stats) if stats else None
        return logits, cache, stacked


def forward(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    input_ids: Array,
    positions: Array,
    attention_mask: Array,
) -> Array:
    """Pure logits [B, T, V] f32 of the model `nnx.split(model)` gave, for jit/grad."""
    logits, _ = nnx.merge(graphdef, params)(input_ids, positions, attention_mask)
    return logits


def forward_with_routing(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    input_ids: Array,
    positions: Array,
    attention_mask: Array,
    routed_experts: Array | None = None,  # [B, T, L, R]; -1 where the router decides
    cache: KVCache | None = None,
) -> tuple[Array, KVCache | None, RouterStats | None]:
    """`Transformer.run` as a pure function: (logits, cache, RouterStats [L, ...] | None)."""
    model = nnx.merge(graphdef, params)
    return model.run(input_ids, positions, attention_mask, cache, routed_experts)


def forward_with_cache(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    input_ids: Array,
    positions: Array,
    attention_mask: Array,
    cache: KVCache,
) -> tuple[Array, KVCache]:
    """Pure prefill / decode step: writes T tokens into `cache`, returns their logits."""
    return nnx.merge(graphdef, params)(input_ids, positions, attention_mask, cache)


def default_positions(attention_mask: Array) -> Array:
    """[B, T] positions counting real tokens only: 0, 1, ... from each row's first token, so a
    left-padded row gets the same positions as its unpadded self (padding slots get 0)."""
    mask = (attention_mask != 0).astype(jnp.int32)
    return jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0) * mask
