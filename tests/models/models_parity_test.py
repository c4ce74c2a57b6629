"""Logits parity with transformers' Qwen3ForCausalLM / Qwen3MoeForCausalLM (the reference)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pivotrl_jax.models import default_positions, load_hf
from pivotrl_jax.models.moe_routing import load_balancing_loss
from pivotrl_jax.models.testing import TINY_CONFIGS, jitted_logits, random_tokens, reference_logits
from pivotrl_jax.models.transformer import forward_with_routing

TOL = 1e-4
MOE = [n for n, c in TINY_CONFIGS.items() if c.is_moe]


def _ours(model, ids, mask=None):
    mask = jnp.asarray(np.ones_like(ids) if mask is None else mask)
    return jitted_logits(model)(jnp.asarray(ids), default_positions(mask), mask)


def test_table_covers_the_features():
    cfgs = TINY_CONFIGS.values()
    assert any(not c.is_moe for c in cfgs) and any(c.is_moe for c in cfgs)
    assert {c.tie_word_embeddings for c in cfgs} == {True, False}
    assert {c.norm_topk_prob for c in cfgs if c.is_moe} == {True, False}
    assert any(c.mlp_only_layers for c in cfgs) and any(c.decoder_sparse_step == 2 for c in cfgs)
    assert any(c.head_dim != c.hidden_size // c.num_attention_heads for c in cfgs)
    ratios = {c.num_attention_heads // c.num_key_value_heads for c in cfgs}
    assert {1, 4} <= ratios


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_logits_match_transformers(name, reference):
    folder, ref = reference(name)
    model, config = load_hf(folder)
    assert config == TINY_CONFIGS[name]
    ids = random_tokens(config, batch=3, length=13, seed=1)
    theirs = reference_logits(ref, ids)
    assert np.abs(theirs).max() > 1.0  # weights large enough that a wrong layer shows
    np.testing.assert_allclose(_ours(model, ids), theirs, atol=TOL, rtol=0)


@pytest.mark.parametrize("dispatch", ["dense", "ragged", "blocked"])
@pytest.mark.parametrize("name", MOE)
def test_every_dispatch_matches_transformers(name, dispatch, reference):
    folder, ref = reference(name)
    model, _ = load_hf(folder, moe_dispatch=dispatch)
    ids = random_tokens(TINY_CONFIGS[name], batch=2, length=9, seed=2)
    np.testing.assert_allclose(_ours(model, ids), reference_logits(ref, ids), atol=TOL, rtol=0)


@pytest.mark.parametrize("name", ["moe_topk_norm", "moe_step2_mlp_only"])
def test_load_balancing_loss_matches_transformers(name, reference):
    """Our router statistics give transformers' load_balancing_loss_func on its own router
    logits, padding masked out, and the same top-k experts at every real token."""
    import torch
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

    folder, ref = reference(name)
    config = TINY_CONFIGS[name]
    model, _ = load_hf(folder)
    ids = random_tokens(config, batch=3, length=11, seed=5)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    graphdef, params = nnx.split(model)
    m = jnp.asarray(mask)
    _, _, stats = forward_with_routing(graphdef, params, jnp.asarray(ids), default_positions(m), m)
    with torch.no_grad():
        out = ref(
            input_ids=torch.as_tensor(ids, dtype=torch.long),
            attention_mask=torch.as_tensor(mask, dtype=torch.long),
            output_router_logits=True,
        )
        theirs = load_balancing_loss_func(
            out.router_logits, config.num_experts, config.num_experts_per_tok,
            torch.as_tensor(mask),
        )  # fmt: skip
    assert float(load_balancing_loss(stats)) == pytest.approx(float(theirs), rel=1e-5)
    real = mask.reshape(-1).astype(bool)
    for layer_logits, experts in zip(out.router_logits, np.asarray(stats.experts)):
        top = torch.topk(layer_logits.float(), config.num_experts_per_tok, dim=-1).indices
        np.testing.assert_array_equal(
            np.sort(experts.reshape(-1, config.num_experts_per_tok)[real], axis=-1),
            np.sort(top.numpy()[real], axis=-1),
        )


@pytest.mark.parametrize("name", ["dense_untied_mha", "moe_topk_norm"])
def test_right_padded_rows_match_transformers_unpadded(name, reference):
    folder, ref = reference(name)
    model, config = load_hf(folder)
    ids = random_tokens(config, batch=2, length=10, seed=3)
    lengths = [10, 6]
    padded = np.zeros((2, 12), np.int32)
    mask = np.zeros((2, 12), np.int32)
    for r, n in enumerate(lengths):
        padded[r, :n] = ids[r, :n]
        mask[r, :n] = 1
    ours = _ours(model, padded, mask)
    for r, n in enumerate(lengths):
        theirs = reference_logits(ref, ids[r : r + 1, :n])[0]
        np.testing.assert_allclose(ours[r, :n], theirs, atol=TOL, rtol=0)


def test_bfloat16_compute_stays_close(reference):
    """bf16 compute (f32 storage) is not exact; it must stay near the f32 reference."""
    folder, ref = reference("moe_topk_norm")
    model, _ = load_hf(folder, dtype="bfloat16", param_dtype="float32")
    ids = random_tokens(TINY_CONFIGS["moe_topk_norm"], batch=2, length=9, seed=4)
    ours = _ours(model, ids)
    assert ours.dtype == np.float32
    theirs = reference_logits(ref, ids)
    # Routing may flip for near-tied experts in bf16; most logits stay within bf16 error.
    assert np.median(np.abs(ours - theirs)) < 0.05
