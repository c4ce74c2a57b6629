"""Long-row memory bounds change nothing: attention over query chunks and the MoE dispatch over
position chunks give the whole-row logits and gradients (padding and packed rows included)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pivotrl_jax.models import default_positions
from pivotrl_jax.models.testing import TINY_CONFIGS, random_model
from pivotrl_jax.models.transformer import Transformer, forward


@pytest.mark.slow
def test_chunked_attention_and_moe_match_whole_rows():
    base = TINY_CONFIGS["moe_topk_norm"]
    state = nnx.state(random_model(base, seed=2, weight_scale=0.1))
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(0, base.vocab_size, (2, 16)), jnp.int32)
    mask = np.ones((2, 16), np.int32)
    mask[0, 11:] = 0  # right padding
    mask[1, 6:] = 2  # two packed sequences
    pos = np.array(default_positions(jnp.asarray(mask != 0)))
    pos[1, 6:] = np.arange(10)
    mask, pos = jnp.asarray(mask), jnp.asarray(pos)

    def run(config):
        graphdef = nnx.graphdef(nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0))))
        loss = lambda p: jnp.mean(
            forward(graphdef, p, ids, pos, mask) ** 2 * (mask != 0)[..., None]
        )
        return jax.jit(jax.value_and_grad(loss))(state)

    want = run(base)
    got = run(base.replace(attention_chunk=4, moe_chunk=8))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)
