"""The compiled generation loop: one prefill, then a `lax.while_loop` of one-token decode steps.

    prefill   cache <- the U distinct prompts [U, Tp] (left-padded), C tokens at a time; each
              of the B rows copies its prompt's cache, samples token 0 from its last logits
    step t    feed token t-1 at position len(prompt) + t - 1, sample token t
    stop      when t reaches max_new_tokens or every row has finished

A row finishes at its first stop token (kept in its tokens) or at max_new_tokens; after that it
still runs through the model with the others but nothing more is recorded for it. The whole loop
is one XLA program: no host round trip per token. Sampling math is in `sampling.py`.

Why chunks: the model's forward returns logits for every position it is given, [U, Tp, V] float32,
and XLA does not narrow the output projection to the one column the prefill needs. Feeding the
prompts C tokens at a time (a `lax.scan` writing the same KV cache) bounds that buffer to
[U, C, V]; the engine picks C from a memory budget.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.models.kv_cache import KVCache, cache_shardings
from pivotrl_jax.models.sharding import ShardingRules
from pivotrl_jax.models.transformer import (
    LayerStates,
    default_positions,
    forward_with_routing,
    layer_states,
)
from pivotrl_jax.rollout.sampling import sample, step_keys

Array = jax.Array


@flax.struct.dataclass
class Decoded:
    tokens: Array  # [B, M] int32; 0 past a row's length
    logprobs: Array  # [B, M] float32; 0 past a row's length
    lengths: Array  # [B] int32 tokens generated per row
    stopped: Array  # [B] bool: the row ended on a stop token (else it hit max_new_tokens)
    # With record_routing (a MoE model): the experts each fed token went to, E at padding.
    prompt_routing: Array | None = None  # [U, Tp, L, R] int32, the distinct prompts' tokens
    routing: Array | None = None  # [B, M, L, R] int32, output token t at column t (t < length-1)


def is_stop(tokens: Array, stop_ids: Array) -> Array:
    """[B] bool: tokens [B] that appear in stop_ids [S'] (padded with -1, which never matches)."""
    return jnp.any(tokens[:, None] == stop_ids[None, :], axis=-1)


def _experts(stats) -> Array | None:
    """[B, T, L, R] experts of one forward's MoE layers (RouterStats [L, B, T, R]), or None."""
    return None if stats is None else jnp.moveaxis(stats.experts, 0, 2)


def loop_layers(graphdef: nnx.GraphDef, params: nnx.State) -> LayerStates | None:
    """What the prefill and decode loops pass as `layers`. On CPU, each layer's parameters
    sliced from its stack once before the loops: sliced inside them, XLA:CPU copies every
    layer's rows at every step (decoding took about twice as long). That holds a second copy of
    the layer weights while generating, so on accelerators, where the KV cache needs the
    memory, None: each step slices the layer it runs."""
    return layer_states(graphdef, params) if jax.default_backend() == "cpu" else None


def prefill(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    prompt_ids: Array,  # [U, Tp] int32, left-padded
    prompt_mask: Array,  # [U, Tp] int32, 1 for a prompt token, 0 for padding
    *,
    config: ModelConfig,
    chunk: int,  # C, divides Tp
    layers: LayerStates | None = None,  # `loop_layers`: sliced once, or None: in each step
) -> tuple[KVCache, Array, Array | None]:
    """Runs the prompts through the model C tokens at a time; returns their cache (Tp slots),
    the float32 logits [U, V] of each prompt's last token and, for a MoE model, the experts
    [U, Tp, L, R] each prompt token went to."""
    U, Tp = prompt_ids.shape
    C = chunk
    if Tp % C:
        raise ValueError(f"prefill chunk {C} does not divide the prompt length {Tp}")
    chunked = lambda x: x.reshape(U, Tp // C, C).transpose(1, 0, 2)  # [Tp/C, U, C]
    positions = default_positions(prompt_mask)  # [U, Tp]

    def step(carry, xs):
        cache, _ = carry
        ids, pos, mask = xs  # [U, C] each
        logits, cache, stats = forward_with_routing(
            graphdef, params, ids, pos, mask, cache=cache, layers=layers
        )  # [U, C, V]
        return (cache, logits[:, -1]), _experts(stats)  # [U, C, L, R]

    carry = (KVCache.init(config, U, Tp), jnp.zeros((U, config.vocab_size), jnp.float32))
    xs = (chunked(prompt_ids), chunked(positions), chunked(prompt_mask))
    (cache, last), experts = jax.lax.scan(step, carry, xs)  # [Tp/C, U, C, L, R]
    if experts is not None:
        experts = jnp.moveaxis(experts, 0, 1).reshape(U, Tp, *experts.shape[3:])
    return cache, last, experts  # left padding: the last column is a real token


def fan_out(cache: KVCache, rows: Array, extra_slots: int) -> KVCache:
    """The cache of row rows[b] of `cache` for each b, with `extra_slots` empty slots appended:
    [U, Tp] slots -> [B, Tp + extra_slots], `index` unchanged."""
    pad = lambda x: jnp.pad(x[rows], [(0, 0), (0, extra_slots)] + [(0, 0)] * (x.ndim - 2))
    return KVCache(
        k=tuple(pad(k) for k in cache.k),
        v=tuple(pad(v) for v in cache.v),
        positions=pad(cache.positions),
        segment_ids=pad(cache.segment_ids),
        index=cache.index,
    )


def generate(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    prompt_ids: Array,  # [U, Tp] int32, the distinct prompts, left-padded
    prompt_mask: Array,  # [U, Tp] int32, 1 for a prompt token, 0 for padding
    row_prompt: Array,  # [B] int32, the prompt each row continues
    row_keys: Array,  # [B] typed PRNG keys
    max_new_tokens: Array,  # [] int32, at most max_steps
    temperature: Array,  # [] float32; unused when greedy
    top_k: Array,  # [] int32; <= 0 is off
    top_p: Array,  # [] float32
    stop_ids: Array,  # [S'] int32, padded with -1
    *,
    config: ModelConfig,
    max_steps: int,  # M, the static size of the output buffers
    prefill_chunk: int,  # C, divides Tp
    greedy: bool,
    filtered: bool,
    mesh: Mesh | None = None,
    rules: ShardingRules | None = None,
    record_routing: bool = False,
) -> Decoded:
    """Samples up to `max_new_tokens` tokens for each row; see the module docstring.

    Each distinct prompt is prefilled once and its cache copied to every row that continues it
    (the n samples of a prompt share one prefill). Everything after `*` is static (bind it with
    functools.partial before jax.jit). With a `mesh`, the KV caches are laid out like the model's
    activations (rows over the batch axes, KV heads over `tensor`). With `record_routing` (a
    MoE model), the experts of every fed token come back too (Decoded.prompt_routing, .routing).
    """
    B, M = row_prompt.shape[0], max_steps
    constrain = lambda c: c
    if mesh is not None:
        constrain = lambda c: jax.lax.with_sharding_constraint(
            c, cache_shardings(c, mesh, rules or ShardingRules())
        )
    draw = lambda logits, t: sample(
        logits, step_keys(row_keys, t), temperature, top_k, top_p, greedy=greedy, filtered=filtered
    )

    layers = loop_layers(graphdef, params)
    cache, last, prompt_routing = prefill(
        graphdef, params, prompt_ids, prompt_mask, config=config, chunk=prefill_chunk, layers=layers
    )  # [U, Tp] slots, [U, V], [U, Tp, L, R] | None
    record = record_routing and prompt_routing is not None
    cache = constrain(fan_out(constrain(cache), row_prompt, M))  # [B, Tp + M] slots
    token, logprob = draw(last[row_prompt], 0)
    prompt_len = jnp.sum(prompt_mask != 0, axis=1).astype(jnp.int32)[row_prompt]  # [B]
    stopped = is_stop(token, stop_ids)
    out = Decoded(
        tokens=jnp.zeros((B, M), jnp.int32).at[:, 0].set(token),
        logprobs=jnp.zeros((B, M), jnp.float32).at[:, 0].set(logprob),
        lengths=jnp.ones((B,), jnp.int32),
        stopped=stopped,
        prompt_routing=prompt_routing if record else None,
        routing=jnp.zeros((B, M, *prompt_routing.shape[2:]), jnp.int32) if record else None,
    )
    done = stopped | (max_new_tokens <= 1)
    limit = jnp.minimum(max_new_tokens, M)

    def cond(carry):
        t, _, _, done, _ = carry
        return (t < limit) & ~jnp.all(done)

    def body(carry):
        t, cache, out, done, last = carry
        step_positions = (prompt_len + t - 1)[:, None]  # [B, 1]
        logits, cache, stats = forward_with_routing(
            graphdef,
            params,
            last[:, None],
            step_positions,
            jnp.ones((B, 1), jnp.int32),
            cache=cache,
            layers=layers,
        )  # [B, 1, V]
        token, logprob = draw(logits[:, 0], t)
        live = ~done
        stop = is_stop(token, stop_ids) & live
        out = Decoded(
            tokens=out.tokens.at[:, t].set(jnp.where(live, token, 0)),
            logprobs=out.logprobs.at[:, t].set(jnp.where(live, logprob, 0.0)),
            lengths=out.lengths + live.astype(jnp.int32),
            stopped=out.stopped | stop,
            prompt_routing=out.prompt_routing,
            # The token fed at step t is output token t - 1.
            routing=out.routing.at[:, t - 1].set(_experts(stats)[:, 0]) if record else None,
        )
        done = done | stop | (t + 1 >= limit)
        return t + 1, cache, out, done, token

    carry = (jnp.asarray(1, jnp.int32), cache, out, done, token)
    _, _, out, _, _ = jax.lax.while_loop(cond, body, carry)
    return out
