"""The Qwen3 / Qwen3-MoE decoder, and the pure forward the trainer jits.

    logits, cache = model(input_ids, positions, attention_mask, cache=None, parent_ids=None)
    logits, cache, router = model.run(..., routed_experts=None)     # + the MoE routers' stats

input_ids, positions: [B, T] int; attention_mask: [B, T] int, 0 for padding, 1 for a token
(or 1, 2, ... numbering packed sequences: see attention.py); cache: a `KVCache` or None;
parent_ids: [B, T] int or None, the segment each segment continues (prefix-shared rows).
logits: [B, T, V] float32; cache: the updated cache, or None when none was given.
routed_experts: [B, T, L, R] int or None, MoE experts to replay (routing replay; -1 where the
router decides), L = one entry per MoE layer or per layer; router: `RouterStats` stacked over
the MoE layers in layer order ([L_moe, ...]), None for a dense model.

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

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from pivotrl_jax.models.attention import Attention, MaskSource
from pivotrl_jax.models.attention import attention_mask as attention_mask_of
from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.models.kv_cache import KVCache
from pivotrl_jax.models.layers import RMSNorm, SwiGLU, normal_init
from pivotrl_jax.models.moe import MoEBlock
from pivotrl_jax.models.moe_routing import RouterStats
from pivotrl_jax.models.stacks import layer_groups, layer_kinds, layer_rows, layer_stacks
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
        x,  # [B, T, D]
        positions,  # [B, T]
        segment_ids,  # [B, T]; 0: padding
        mask,  # [B, T, S] bool or a MaskSource (see Attention)
        cache_kv=None,
        cache_index=None,
        block=0,
        replayed=None,  # [B, T, R] experts to force (MoE layers); NOT_REPLAYED: the router's
    ):
        """-> (x, cache_kv, RouterStats of a MoE layer or None); padding reaches no expert."""
        h, cache_kv = self.attn(self.input_norm(x), positions, mask, cache_kv, cache_index, block)
        x = x + h
        if not self.is_moe:
            return x + self.mlp(self.post_attn_norm(x)), cache_kv, None
        y, stats = self.mlp(self.post_attn_norm(x), segment_ids != 0, replayed)
        return x + y, cache_kv, stats


def _stacked(layers: Sequence[DecoderLayer]) -> DecoderLayer:
    """One DecoderLayer whose parameters are those of `layers` (all of one kind) stacked on a
    new leading [n] axis, logical axis "layers"."""
    graphdef = nnx.split(layers[0])[0]
    state = jax.tree.map(lambda *xs: jnp.stack(xs), *(nnx.split(layer)[1] for layer in layers))
    for _, var in nnx.to_flat_state(state):
        var.set_metadata(logical_axes=("layers", *var.get_metadata()["logical_axes"]))
    return nnx.merge(graphdef, state)


def _row(stack: DecoderLayer, r: int) -> DecoderLayer:
    """Layer `r` of a stacked DecoderLayer (its parameters' row r)."""
    graphdef, state = nnx.split(stack)
    return nnx.merge(graphdef, jax.tree.map(lambda a: a[r], state))


class Transformer(nnx.Module):
    """Token embedding, `num_hidden_layers` decoder layers, final RMSNorm, output head.

    The layers' parameters are stored as stacks (stacks.py): `stacks[s]` is a DecoderLayer
    whose every parameter has a leading [n] axis over the n layers of a run of one kind. Without
    a cache the layers run as `lax.scan`s over those runs (`config.scan_layers`), the scan
    slicing each layer's rows from the stacks, so neither the program nor compile time grows
    with depth; `config.remat` then applies to the scan body. Attention then skips the key
    columns after each query block (`config.attention_block`): a token may see only its own and
    earlier columns, as in every row layout of train/batching.py and in left- or right-padded
    rows. The [B, T, S] mask is built once per forward, except on rows longer than
    `config.attention_chunk`, which attend a query chunk at a time, each building its own
    (attention_chunked.py). With a cache (prefill, decode), or without `scan_layers`, the
    layers run one after another, each its rows of its stack.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        c = self.config = config
        V, D = c.vocab_size, c.hidden_size
        self.embedding = nnx.Param(
            normal_init(("vocab", "embed"))(rngs.params(), (V, D), c.storage_dtype)
        )
        # Built layer by layer (the initialisation of an unstacked model), then stacked.
        layers = [DecoderLayer(c, i, rngs=rngs) for i in range(c.num_hidden_layers)]
        stacks = layer_stacks(layer_kinds(c))
        self.stacks = nnx.List([_stacked([layers[i] for i in ls]) for ls in stacks])
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

    def layer(self, i: int) -> DecoderLayer:
        """Layer `i`, its parameters sliced from its stack."""
        s, r = layer_rows(layer_kinds(self.config))[i]
        return _row(self.stacks[s], r)

    def _remat(self, fn):
        c = self.config
        return fn if c.remat == "none" else jax.checkpoint(fn, policy=REMAT_POLICIES.get(c.remat))

    def _mask(
        self,
        positions: Array,  # [B, T]
        segment_ids: Array,  # [B, T]
        kv_positions: Array,  # [B, S]
        kv_segment_ids: Array,  # [B, S]
        parent_ids: Array | None = None,  # [B, T]
    ) -> Array | MaskSource:
        """The [B, T, S] attention mask, built once per forward for every layer; on rows longer
        than `config.attention_chunk`, what it is built from instead (each query chunk of
        attention_chunked.py builds its own, so no [B, T, S] array exists)."""
        ids = (positions, segment_ids, kv_positions, kv_segment_ids, parent_ids)
        chunk = self.config.attention_chunk
        if chunk and positions.shape[1] > chunk:
            return MaskSource(*ids)
        return attention_mask_of(*ids)

    def _replayed(self, routed_experts: Array | None, layers: Sequence[int]) -> Array | None:
        """[len(layers), B, T, R] experts to replay in `layers` (MoE layers), or None."""
        if routed_experts is None:
            return None
        c = self.config
        moe = [i for i in range(c.num_hidden_layers) if c.is_moe_layer(i)]
        # One entry per layer (SGLang's layout) or one per MoE layer.
        every_layer = routed_experts.shape[2] == c.num_hidden_layers
        index = [i if every_layer else moe.index(i) for i in layers]
        return jnp.moveaxis(routed_experts[:, :, jnp.asarray(index)], 2, 0)

    def hidden_states(
        self,
        input_ids: Array,  # [B, T]
        positions: Array,  # [B, T]
        attention_mask: Array,  # [B, T]; 0 = padding, else a segment id
        parent_ids: Array | None = None,  # [B, T]; see attention.py
        routed_experts: Array | None = None,  # [B, T, L, R]; see the module docstring
    ) -> tuple[Array, RouterStats | None]:
        """([B, T, D] after the final norm, in the compute dtype; the MoE routers' stats)."""
        c = self.config
        segment_ids = attention_mask.astype(jnp.int32)
        x = jnp.take(self.embedding[...], input_ids, axis=0).astype(c.compute_dtype)  # [B, T, D]
        mask = self._mask(positions, segment_ids, positions, segment_ids, parent_ids)

        def apply(layer, x, replayed):
            out = layer(x, positions, segment_ids, mask, block=c.attention_block, replayed=replayed)
            return out[0], out[2]

        stats: dict[int, RouterStats] = {}  # layer -> its routers' stats
        kinds = layer_kinds(c)
        runs = layer_groups(kinds) if c.scan_layers else [(i, 1, 1) for i in range(len(kinds))]
        first = 0  # the run's first stack (stacks.layer_stacks: stacks follow layer_groups)
        for start, period, repeats in runs:
            if repeats == 1:
                replayed = self._replayed(routed_experts, [start]) if kinds[start] else None
                layer = self.layer(start)
                x, layer_stats = self._remat(
                    lambda x, rep, layer=layer: apply(layer, x, None if rep is None else rep[0])
                )(x, replayed)
                if layer_stats is not None:
                    stats[start] = layer_stats
                first += period
                continue
            index = [[start + r * period + j for j in range(period)] for r in range(repeats)]
            split = [nnx.split(self.stacks[first + j]) for j in range(period)]
            first += period
            replays = [
                self._replayed(routed_experts, [row[j] for row in index]) if kinds[start + j]
                else None
                for j in range(period)
            ]  # fmt: skip

            graphdefs = [graphdef for graphdef, _ in split]

            def body(x, xs, graphdefs=graphdefs):
                states, replays = xs
                out = []
                for graphdef, state, replayed in zip(graphdefs, states, replays):
                    x, layer_stats = apply(nnx.merge(graphdef, state), x, replayed)
                    out.append(layer_stats)
                return x, out

            xs = ([state for _, state in split], replays)  # stacked [repeats, ...]
            x, per_layer = jax.lax.scan(self._remat(body), x, xs)
            for j, layer_stats in enumerate(per_layer):  # [repeats, ...] for layer j of a period
                for r, row in enumerate(index):
                    if layer_stats is not None:
                        stats[row[j]] = jax.tree.map(lambda a, r=r: a[r], layer_stats)
        ordered = [stats[i] for i in sorted(stats)]
        router = jax.tree.map(lambda *a: jnp.stack(a), *ordered) if ordered else None
        return self.final_norm(x), router

    def __call__(
        self,
        input_ids: Array,  # [B, T]
        positions: Array,  # [B, T]
        attention_mask: Array,  # [B, T]; 0 = padding, else a segment id
        cache: KVCache | None = None,
        parent_ids: Array | None = None,  # [B, T]; see attention.py (no cache only)
    ) -> tuple[Array, KVCache | None]:
        logits, cache, _ = self.run(input_ids, positions, attention_mask, cache, parent_ids)
        return logits, cache

    def run(
        self,
        input_ids: Array,  # [B, T]
        positions: Array,  # [B, T]
        attention_mask: Array,  # [B, T]; 0 = padding, else a segment id
        cache: KVCache | None = None,
        parent_ids: Array | None = None,  # [B, T]; see attention.py (no cache only)
        routed_experts: Array | None = None,  # [B, T, L, R]; see the module docstring
        layers: Sequence[DecoderLayer] | None = None,  # with a cache: `self.layer(i)`, each i
    ) -> tuple[Array, KVCache | None, RouterStats | None]:
        """`__call__` that replays `routed_experts` and also returns the routers' stats. A
        decode loop passes `layers` sliced once before it (`layer_states`): sliced inside the
        loop, each step would copy every layer's rows out of its stack."""
        if cache is None:
            hidden, router = self.hidden_states(
                input_ids, positions, attention_mask, parent_ids, routed_experts
            )
            return self.logits(hidden), None, router
        if parent_ids is not None:
            raise ValueError("parent_ids are not supported with a KV cache")
        c = self.config
        T = input_ids.shape[1]
        segment_ids = attention_mask.astype(jnp.int32)
        x = jnp.take(self.embedding[...], input_ids, axis=0).astype(c.compute_dtype)  # [B, T, D]
        index = cache.index
        cache = cache.write_tokens(positions, segment_ids)
        mask = self._mask(positions, segment_ids, cache.positions, cache.segment_ids)
        ks, vs, stats = [], [], []
        for i in range(c.num_hidden_layers):
            layer = self.layer(i) if layers is None else layers[i]
            replayed = self._replayed(routed_experts, [i]) if layer.is_moe else None
            x, (k, v), layer_stats = layer(
                x,
                positions,
                segment_ids,
                mask,
                (cache.k[i], cache.v[i]),
                index,
                replayed=None if replayed is None else replayed[0],
            )
            ks.append(k)
            vs.append(v)
            if layer_stats is not None:
                stats.append(layer_stats)
        logits = self.logits(self.final_norm(x))
        router = jax.tree.map(lambda *a: jnp.stack(a), *stats) if stats else None
        return logits, cache.advance(ks, vs, T), router


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
    routed_experts: Array | None = None,
) -> tuple[Array, Array, RouterStats | None]:
    """Pure (final hidden states [B, T, D], output head [D, V], MoE routers' stats): the logits
    are `hidden @ head`, left to the caller to compute in chunks (train/logprobs.py)."""
    model = nnx.merge(graphdef, params)
    hidden, router = model.hidden_states(
        input_ids, positions, attention_mask, parent_ids, routed_experts
    )
    return hidden, model.output_head(), router


LayerStates = list[tuple[nnx.GraphDef, nnx.State]]  # per layer, `nnx.split(model.layer(i))`


def layer_states(graphdef: nnx.GraphDef, params: nnx.State) -> LayerStates:
    """Every layer's own parameters, sliced from the stacks: what a decode loop computes once
    before it and passes to each step's `forward_with_routing(..., layers=...)`."""
    model = nnx.merge(graphdef, params)
    return [nnx.split(model.layer(i)) for i in range(model.config.num_hidden_layers)]


def forward_with_routing(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    input_ids: Array,
    positions: Array,
    attention_mask: Array,
    routed_experts: Array | None = None,  # [B, T, L, R]; -1 where the router decides
    cache: KVCache | None = None,
    parent_ids: Array | None = None,
    layers: LayerStates | None = None,  # with a cache: `layer_states(graphdef, params)`
) -> tuple[Array, KVCache | None, RouterStats | None]:
    """`Transformer.run` as a pure function: (logits, cache, RouterStats [L, ...] | None)."""
    model = nnx.merge(graphdef, params)
    merged = None if layers is None else [nnx.merge(g, state) for g, state in layers]
    return model.run(
        input_ids, positions, attention_mask, cache, parent_ids, routed_experts, merged
    )


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
