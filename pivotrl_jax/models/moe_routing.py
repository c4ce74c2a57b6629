"""Top-k softmax routing of the Qwen3-MoE block, its statistics and the load-balancing loss.

For each token x (padding included in the arrays, excluded from everything else):

  1. router logits  z = x W_r                            [B, T, E]   float32
  2. probabilities  p = softmax(z) over all E             [B, T, E]   float32
  3. chosen         c = top_R(p)  (the router's own pick)  [B, T, R]
  4. experts        e = replayed ids where given (>= 0), else c      (routing replay)
  5. weights        w = p[e]; if norm_topk_prob: w <- w / sum_R w
  6. padding        e = E (no expert), w = 0: a padding token reaches no expert

Replayed ids are the experts another engine (SGLang's `return_routed_experts`, or the JAX engine
recording its own decode) chose for the same token; forcing them makes the trainer compute the
same sparse function as the rollout did, while the weights still come from this router's
probabilities, so gradients reach the hidden states through them.

`RouterStats` carries per-layer sums over real tokens; `load_balancing_loss` combines them as
transformers' `load_balancing_loss_func` does (Switch Transformer, eqs. 4-6, layers concatenated):

    L_aux = E sum_e f_e P_e,   f_e = (1/N) sum_{l,t} 1[e in c_l(t)],   P_e = (1/N) sum_{l,t} p_le(t)

with N the real tokens summed over the MoE layers.

>>> x = jnp.ones((1, 2, 1)); router = jnp.log(jnp.asarray([[1.0, 2.0, 1.0]]))
>>> w, stats = route(x, router, 2, True, valid=jnp.asarray([[True, False]]))
>>> stats.experts.tolist(), w.round(3).tolist()
([[[1, 0], [3, 3]]], [[[0.667, 0.333], [0.0, 0.0]]])
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

Array = jax.Array
NOT_REPLAYED = -1  # a replayed id meaning "no replay for this token: use the router's choice"


@struct.dataclass
class RouterStats:
    """What one MoE layer's routing did (leading [L] when stacked over layers)."""

    experts: Array  # [B, T, R] int32: experts each token was sent to; E at padding
    chosen: Array  # [B, T, R] int32: the router's own top-R (equal to experts unless replayed)
    load: Array  # [E] float32: real tokens with e among their chosen experts
    prob_sum: Array  # [E] float32: sum over real tokens of p_e
    tokens: Array  # [] float32: real tokens


def route(
    x: Array,  # [B, T, D]
    router: Array,  # [D, E]
    top_k: int,
    norm_topk_prob: bool,
    valid: Array | None = None,  # [B, T] bool, False at padding
    replayed: Array | None = None,  # [B, T, R] int, NOT_REPLAYED where not replayed
) -> tuple[Array, RouterStats]:
    """Steps 1-6 of the module docstring -> (weights [B, T, R] float32, RouterStats)."""
    B, T, _ = x.shape
    E = router.shape[-1]
    # Router logits and softmax in float32, whatever the compute dtype.
    logits = jnp.einsum("BTD,DE->BTE", x.astype(jnp.float32), router.astype(jnp.float32))
    probs = jax.nn.softmax(logits, axis=-1)  # [B, T, E]
    _, chosen = jax.lax.top_k(probs, top_k)  # [B, T, R]
    chosen = chosen.astype(jnp.int32)
    experts = chosen
    if replayed is not None:
        experts = jnp.where(replayed >= 0, replayed.astype(jnp.int32), chosen)
    weights = jnp.take_along_axis(probs, experts, axis=-1)  # [B, T, R]
    if norm_topk_prob:
        weights = weights / jnp.sum(weights, axis=-1, keepdims=True)
    if valid is None:
        valid = jnp.ones((B, T), bool)
    weights = jnp.where(valid[..., None], weights, 0.0)
    experts = jnp.where(valid[..., None], experts, E)
    chosen = jnp.where(valid[..., None], chosen, E)
    real = valid.astype(jnp.float32)  # [B, T]
    load = jnp.sum(jax.nn.one_hot(chosen, E, dtype=jnp.float32), axis=(0, 1, 2))  # [E]
    prob_sum = jnp.einsum("BTE,BT->E", probs, real)
    stats = RouterStats(experts, chosen, load, prob_sum, jnp.sum(real))
    return weights, stats


def load_balancing_loss(stats: RouterStats) -> Array:
    """[] float32 L_aux of the module docstring from stats stacked over layers ([L, ...])."""
    E = stats.load.shape[-1]
    n = jnp.maximum(jnp.sum(stats.tokens), 1.0)
    f = jnp.sum(stats.load.reshape(-1, E), axis=0) / n  # [E]
    p = jnp.sum(stats.prob_sum.reshape(-1, E), axis=0) / n  # [E]
    return E * jnp.sum(f * p)


def router_agreement(
    chosen: Array,  # [..., R] the trainer router's own top-R; E at padding
    replayed: Array,  # [..., R] the rollout's experts; NOT_REPLAYED where none
    num_experts: int,
) -> tuple[Array, Array]:
    """(matches, slots) float32: replayed experts of real tokens that the trainer's router also
    picked, and the number of such replayed slots; matches / slots is the router agreement."""
    used = (replayed >= 0) & (chosen[..., :1] < num_experts)  # [..., R]
    hit = jnp.any(replayed[..., :, None] == chosen[..., None, :], axis=-1)  # [..., R]
    return jnp.sum(hit & used).astype(jnp.float32), jnp.sum(used).astype(jnp.float32)
