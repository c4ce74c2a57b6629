"""Next-token sampling math: temperature, top-k / top-p filtering, Gumbel-max draws, logprobs.

Pure functions of one decoding step's logits z: [B, V] (float32). For temperature T > 0:

    pi_T(v)   = softmax(z / T)_v                          the behaviour distribution
    keep(v)   = v among the top_k largest z  and  v in the top-p nucleus of pi_T
    a         = argmax_v [ z_v / T + g_v ],  g_v ~ Gumbel(0, 1), over kept v only
    logprob   = log pi_T(a)                               (untruncated: no top-k/top-p
                                                           renormalisation)

T = 0 is greedy: a = argmax_v z_v (the lowest index among ties) and logprob = log softmax(z)_a,
the temperature-1 distribution. At T = 1 with no filter, logprob is exactly the model's own
log-softmax of its float32 logits, which is what GRPO's importance ratio needs.

Randomness comes from one key per row, folded with the step index, so a row's draws do not depend
on which other rows share its batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def tempered_log_probs(logits: Array, temperature: Array | float) -> Array:
    """log pi_T = z / T - logsumexp(z / T) in float32; T <= 0 (greedy) is treated as T = 1.

    Args:
      logits: [B, V].
      temperature: [] scalar.
    Returns:
      [B, V] float32.
    """
    t = jnp.asarray(temperature, jnp.float32)
    t = jnp.where(t > 0, t, 1.0)
    # Log-softmax in float32, whatever dtype the logits arrive in.
    return jax.nn.log_softmax(logits.astype(jnp.float32) / t, axis=-1)


def filter_mask(log_probs: Array, top_k: Array | int, top_p: Array | float) -> Array:
    """[B, V] bool: which tokens survive top-k and top-p on the distribution `log_probs`.

    Sort pi descending, p_(1) >= p_(2) >= ... (ties in vocabulary order); rank i (0-based) is
    kept iff  i < top_k  and  sum_{j < i} p_(j) < top_p.  So the most likely token is always
    kept, top_k <= 0 means no top-k, and top_p >= 1 means no top-p. Both limits apply to the
    same (tempered, unfiltered) distribution, as SGLang's torch sampler does.

    Args:
      log_probs: [B, V] float32.
      top_k, top_p: [] scalars (traced values are fine: one compilation serves all settings).
    """
    B, V = log_probs.shape
    order = jnp.argsort(-log_probs, axis=-1, stable=True)  # [B, V] token at each rank
    sorted_p = jnp.exp(jnp.take_along_axis(log_probs, order, axis=-1))  # [B, V]
    mass_before = jnp.cumsum(sorted_p, axis=-1) - sorted_p  # [B, V]
    rank = jnp.arange(V)[None, :]
    k = jnp.where(top_k > 0, top_k, V)
    keep_sorted = (rank < k) & ((mass_before < top_p) | (rank == 0))  # [B, V]
    rows = jnp.arange(B)[:, None]
    return jnp.zeros((B, V), bool).at[rows, order].set(keep_sorted)


def step_keys(row_keys: Array, step: Array | int) -> Array:
    """[B] keys for decoding step `step`: fold_in(row_key, step) for each row."""
    return jax.vmap(jax.random.fold_in, in_axes=(0, None))(row_keys, step)


def sample(
    logits: Array,  # [B, V]
    keys: Array,  # [B] typed PRNG keys, one per row
    temperature: Array | float,  # []
    top_k: Array | int,  # []
    top_p: Array | float,  # []
    *,
    greedy: bool,
    filtered: bool,
) -> tuple[Array, Array]:
    """One token per row and its logprob under pi_T (see the module docstring).

    `greedy` and `filtered` are static switches: greedy ignores keys, temperature and the
    filter; `filtered=False` skips the vocabulary sort (top_k <= 0 and top_p >= 1).

    Returns:
      tokens [B] int32, logprobs [B] float32.
    """
    log_probs = tempered_log_probs(logits, temperature)  # [B, V]
    if greedy:
        tokens = jnp.argmax(logits, axis=-1)
    else:
        V = logits.shape[-1]
        gumbel = jax.vmap(lambda k: jax.random.gumbel(k, (V,), jnp.float32))(keys)  # [B, V]
        scores = log_probs + gumbel  # argmax of log pi_T + g draws from pi_T
        if filtered:
            scores = jnp.where(filter_mask(log_probs, top_k, top_p), scores, -jnp.inf)
        tokens = jnp.argmax(scores, axis=-1)
    tokens = tokens.astype(jnp.int32)
    chosen = jnp.take_along_axis(log_probs, tokens[:, None], axis=-1)[:, 0]
    return tokens, chosen
