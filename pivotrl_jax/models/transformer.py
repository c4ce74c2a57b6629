"""The Qwen3 / Qwen3-MoE decoder, and the pure forward the trainer jits.

    logits, cache = model(input_ids, positions, attention_mask, cache=None, parent_ids=None)

input_ids, positions: [B, T] int; attention_mask: [B, T] int, 0 for padding, 1 for a token
(or 1, 2, ... numbering packed sequences: see attention.py); cache: a `KVCache` or None;
parent_ids: [B, T] int or None, the segment each segment continues (prefix-shared rows).
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

from collections.abc import Hashable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from pivotrl_jax.models.attention import Attention
from pivotrl_jax.models.attention import attention_mask as attention_mask_of
from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.models.kv_cache import KVCache
from pivotrl_jax.models.layers import RMSNorm, SwiGLU, normal_init
from pivotrl_jax.models.moe import MoEBlock
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
                **kw,
            )
        else:
            self.mlp = SwiGLU(c.hidden_size, c.intermediate_size, **kw)

    def __call__(self, x, positions, mask, cache_kv=None, cache_index=None, block=0):
        """x [B, T, D], positions [B, T], mask [B, T, S] bool -> (x, updated cache_kv)."""
        h, cache_kv = self.attn(self.input_norm(x), positions, mask, cache_kv, cache_index, block)
        x = x + h
        return x + self.mlp(self.post_attn_norm(x)), cache_kv


def layer_groups(kinds: Sequence[Hashable], max_period: int = 4) -> list[tuple[int, int, int]]:
    """Cover layers 0..L-1 with runs (start, period, repeats) of a repeated pattern of kinds.

    Layers [start, start + period * repeats) are `repeats` copies of kinds[start:start+period],
    so one scan over the repeats runs them with one compiled body; a layer that repeats nothing
    gets a run of its own (repeats 1). Each run is the longest one found from its start.

    >>> layer_groups(["dense", "moe", "moe", "moe"])
    [(0, 1, 1), (1, 1, 3)]
    >>> layer_groups(["dense", "moe"] * 3)
    [(0, 2, 3)]
    """
    kinds = tuple(kinds)
    out, i = [], 0
    while i < len(kinds):
        best = (1, 1)
        for period in range(1, min(max_period, len(kinds) - i) + 1):
            pattern = kinds[i : i + period]
            repeats = 1
            while kinds[i + repeats * period : i + (repeats + 1) * period] == pattern:
                repeats += 1
            if repeats > 1 and period * repeats > best[0] * best[1]:
                best = (period, repeats)
        out.append((i, *best))
        i += best[0] * best[1]
    return out


def _stack(states: Sequence[nnx.State]) -> nnx.State:
    """Per-layer parameter states -> one state whose arrays have a leading [L] axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *states)


class Transformer(nnx.Module):
    """Token embedding, `num_hidden_layers` decoder layers, final RMSNorm, output head.

    Without a cache the layers run as `lax.scan`s over runs of layers of the same kind
    (`layer_groups`; `config.scan_layers`), each layer's parameters sliced from a stack made
    inside the jitted program, so compile time does not grow with depth; `config.remat` then
    applies to the scan body. Attention then skips the key columns after each query block
    (`config.attention_block`): a token may see only its own and earlier columns, as in every
    row layout of train/batching.py and in left- or right-padded rows. With a cache (prefill,
    decode) the layers run one after another over the full cache.
    """

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

    def output_head(self) -> Array:
        """[D, V] output projection in the compute dtype (the embedding's transpose if tied)."""
        dt = self.config.compute_dtype
        if self.config.tie_word_embeddings:
            return self.embedding[...].astype(dt).T
        return self.lm_head[...].astype(dt)

    def logits(self, hidden: Array) -> Array:  # [B, T, D] -> [B, T, V] float32
        # Output logits accumulate and return in float32.
        return jnp.einsum(
            "BTD,DV->BTV", hidden, self.output_head(), preferred_element_type=jnp.float32
        )

    def _remat(self, fn):
        c = self.config
        return fn if c.remat == "none" else jax.checkpoint(fn, policy=REMAT_POLICIES.get(c.remat))

    def hidden_states(
        self,
        input_ids: Array,  # [B, T]
        positions: Array,  # [B, T]
        attention_mask: Array,  # [B, T]; 0 = padding, else a segment id
        parent_ids: Array | None = None,  # [B, T]; see attention.py
    ) -> Array:  # [B, T, D] after the final norm, in the compute dtype
        c = self.config
        segment_ids = attention_mask.astype(jnp.int32)
        x = jnp.take(self.embedding[...], input_ids, axis=0).astype(c.compute_dtype)  # [B, T, D]
        mask = attention_mask_of(positions, segment_ids, positions, segment_ids, parent_ids)

        def apply(layer, x):
            return layer(x, positions, mask, block=c.attention_block)[0]

        kinds = [c.is_moe_layer(i) for i in range(c.num_hidden_layers)]
        runs = layer_groups(kinds) if c.scan_layers else [(0, len(kinds), 1)]
        for start, period, repeats in runs:
            blocks = [
                [self.layers[start + r * period + j] for j in range(period)] for r in range(repeats)
            ]
            if repeats == 1:
                for layer in blocks[0]:
                    x = self._remat(lambda x, layer=layer: apply(layer, x))(x)
                continue
            graphdefs = [nnx.split(layer)[0] for layer in blocks[0]]
            stacks = [_stack([nnx.split(b[j])[1] for b in blocks]) for j in range(period)]

            def body(x, states, graphdefs=graphdefs):
                for graphdef, state in zip(graphdefs, states):
                    x = apply(nnx.merge(graphdef, state), x)
                return x, None

            x, _ = jax.lax.scan(self._remat(body), x, stacks)
        return self.final_norm(x)

    def __call__(
        self,
        input_ids: Array,  # [B, T]
        positions: Array,  # [B, T]
        attention_mask: Array,  # [B, T]; 0 = padding, else a segment id
        cache: KVCache | None = None,
        parent_ids: Array | None = None,  # [B, T]; see attention.py (no cache only)
    ) -> tuple[Array, KVCache | None]:
        if cache is None:
            hidden = self.hidden_states(input_ids, positions, attention_mask, parent_ids)
            return self.logits(hidden), None
        if parent_ids is not None:
            raise ValueError("parent_ids are not supported with a KV cache")
        c = self.config
        T = input_ids.shape[1]
        segment_ids = attention_mask.astype(jnp.int32)
        x = jnp.take(self.embedding[...], input_ids, axis=0).astype(c.compute_dtype)  # [B, T, D]
        index = cache.index
        cache = cache.write_tokens(positions, segment_ids)
        mask = attention_mask_of(positions, segment_ids, cache.positions, cache.segment_ids)
        ks, vs = [], []
        for i, layer in enumerate(self.layers):
            x, (k, v) = layer(x, positions, mask, (cache.k[i], cache.v[i]), index)
            ks.append(k)
            vs.append(v)
        logits = self.logits(self.final_norm(x))
        return logits, cache.advance(ks, vs, T)


def forward(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    input_ids: Array,
    positions: Array,
    attention_mask: Array,
    parent_ids: Array | None = None,
) -> Array:
    """Pure logits [B, T, V] f32 of the model `nnx.split(model)` gave, for jit/grad."""
    logits, _ = nnx.merge(graphdef, params)(
        input_ids, positions, attention_mask, parent_ids=parent_ids
    )
    return logits


def forward_hidden(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    input_ids: Array,
    positions: Array,
    attention_mask: Array,
    parent_ids: Array | None = None,
) -> tuple[Array, Array]:
    """Pure (final hidden states [B, T, D], output head [D, V]): the logits are
    `hidden @ head`, left to the caller to compute in chunks (train/logprobs.py)."""
    model = nnx.merge(graphdef, params)
    return model.hidden_states(
        input_ids, positions, attention_mask, parent_ids
    ), model.output_head()


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
