"""The JAX rollout engine against the model's full forward and transformers' greedy `generate`.

Tiny random Qwen3 and Qwen3-MoE checkpoints are built in torch, saved with `save_pretrained` and
loaded through the models package's HF import, so both sides run the same weights.
"""

import functools
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from pivotrl_jax.models import default_positions, forward
from pivotrl_jax.models.testing import TINY_CONFIGS, build_reference
from pivotrl_jax.rollout.base import SamplingParams
from pivotrl_jax.rollout.jax_engine import JaxEngine, JaxEngineOptions

# Dense and MoE, both with untied heads (what SGLang serves too).
MODELS = {"dense": "dense_untied_mha", "moe": "moe_topk_norm"}
# Prompts of different lengths in one batch: left padding must not change any row.
PROMPTS = [[5, 17, 3], list(range(20, 33)), [90], [7, 7, 7, 7, 7, 41]]


@pytest.fixture(autouse=True)
def true_float32():
    """Engine and references in true float32 also where matmuls default to TF32 (GPUs)."""
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request, tmp_path_factory):
    """(name, HF folder, transformers model, engine on that folder)."""
    path = tmp_path_factory.mktemp(request.param)
    hf = build_reference(TINY_CONFIGS[MODELS[request.param]], path, seed=1)
    return request.param, path, hf, JaxEngine.from_pretrained(path)


@functools.partial(jax.jit, static_argnums=0)
def _log_softmax(graphdef, params, ids, mask):
    logits = forward(graphdef, params, ids, default_positions(mask), mask)  # [1, T, V]
    return jax.nn.log_softmax(logits, -1)


def _full_forward_logprobs(engine, prompt, tokens, width=32):
    """log softmax of the model's uncached forward on prompt + tokens, gathered at tokens.

    Right padding to a fixed width (causal: it cannot change earlier positions) keeps it to one
    compilation."""
    L, k = len(prompt), len(tokens)
    ids = np.zeros((1, width), np.int32)
    ids[0, : L + k] = list(prompt) + list(tokens)
    mask = (np.arange(width) < L + k).astype(np.int32)[None]
    lp = np.asarray(_log_softmax(engine.graphdef, engine.params, ids, mask))
    return lp[0, L - 1 : L - 1 + k][np.arange(k), np.asarray(tokens)]


def _tokens(groups):
    return [[c.token_ids for c in g] for g in groups]


def test_temperature_one_logprobs_equal_full_forward(model):
    _, _, _, engine = model
    groups = engine.generate(PROMPTS, SamplingParams(max_new_tokens=12, seed=0), n=2)
    assert [len(g) for g in groups] == [2] * len(PROMPTS)
    for prompt, group in zip(PROMPTS, groups):
        for c in group:
            assert len(c.token_ids) == len(c.logprobs) == 12 and c.finish_reason == "length"
            ref = _full_forward_logprobs(engine, prompt, c.token_ids)
            np.testing.assert_allclose(c.logprobs, ref, atol=1e-5, rtol=0)


def test_greedy_equals_transformers_generate(model):
    _, _, hf, engine = model
    steps = 10
    groups = engine.generate(PROMPTS, SamplingParams(max_new_tokens=steps, temperature=0.0), n=1)
    for prompt, (c,) in zip(PROMPTS, groups):
        with torch.no_grad():
            out = hf.generate(
                torch.tensor([prompt]),
                attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                do_sample=False,
                max_new_tokens=steps,
                min_new_tokens=steps,
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=0,
            )
        assert list(c.token_ids) == out.sequences[0, len(prompt) :].tolist()
        # Greedy reports the temperature-1 log-softmax of the chosen tokens.
        hf_lp = torch.log_softmax(torch.cat(out.logits), -1)
        hf_lp = hf_lp[torch.arange(steps), out.sequences[0, len(prompt) :]].numpy()
        np.testing.assert_allclose(c.logprobs, hf_lp, atol=1e-4, rtol=0)


def test_stop_ids_and_max_new_tokens(model):
    _, _, _, engine = model
    greedy = SamplingParams(max_new_tokens=12, temperature=0.0)
    (free,) = engine.generate([PROMPTS[1]], greedy)[0]
    stops = (free.token_ids[4], 95)
    first = min(i for i, t in enumerate(free.token_ids) if t in stops)
    (stopped,) = engine.generate(
        [PROMPTS[1]], SamplingParams(max_new_tokens=12, temperature=0.0, stop_token_ids=stops)
    )[0]
    assert stopped.finish_reason == "stop"
    assert stopped.token_ids == free.token_ids[: first + 1]  # the stop token is included
    np.testing.assert_allclose(stopped.logprobs, free.logprobs[: first + 1], atol=1e-6)
    (short,) = engine.generate([PROMPTS[1]], SamplingParams(max_new_tokens=3, temperature=0.0))[0]
    assert short.finish_reason == "length" and short.token_ids == free.token_ids[:3]
    (one,) = engine.generate([PROMPTS[1]], SamplingParams(max_new_tokens=1, temperature=0.0))[0]
    assert one.token_ids == free.token_ids[:1] and one.finish_reason == "length"


def test_eos_of_the_model_config_stops_unless_disabled(model):
    name, _, _, engine = model
    greedy = SamplingParams(max_new_tokens=12, temperature=0.0)
    (free,) = engine.generate([PROMPTS[2]], greedy)[0]
    eos = free.token_ids[5]
    first = free.token_ids.index(eos)
    model_with_eos = nnx.merge(engine.graphdef, engine.params)
    config = TINY_CONFIGS[MODELS[name]].replace(eos_token_id=(eos, 95))
    (stopped,) = JaxEngine(model_with_eos, config=config).generate([PROMPTS[2]], greedy)[0]
    assert stopped.token_ids == free.token_ids[: first + 1] and stopped.finish_reason == "stop"
    ignoring = JaxEngine(model_with_eos, config=config, options=JaxEngineOptions(stop_at_eos=False))
    assert ignoring.generate([PROMPTS[2]], greedy)[0][0].token_ids == free.token_ids


def test_seeds_reproduce_and_differ(model):
    _, _, _, engine = model
    run = lambda seed: _tokens(
        engine.generate(PROMPTS, SamplingParams(max_new_tokens=8, seed=seed), n=3)
    )
    a = run(11)
    assert a == run(11)
    assert a != run(12)
    assert run(2**40 + 11) != a  # 64-bit seeds keep their high bits
    # The n samples of a prompt are distinct draws (8 tokens from 96: equal by chance ~never).
    assert all(len({tuple(t) for t in group}) == 3 for group in a)


def test_chunking_does_not_change_samples(model):
    _, path, _, engine = model
    small = JaxEngine.from_pretrained(path, options=JaxEngineOptions(max_batch_size=2))
    params = SamplingParams(max_new_tokens=8, seed=5, top_p=0.9)
    # n = 3 on 2-row chunks also splits one prompt's samples over chunks.
    big_out, small_out = engine.generate(PROMPTS, params, n=3), small.generate(PROMPTS, params, 3)
    assert _tokens(big_out) == _tokens(small_out)
    for g1, g2 in zip(big_out, small_out):
        for c1, c2 in zip(g1, g2):
            np.testing.assert_allclose(c1.logprobs, c2.logprobs, atol=1e-5)


def test_top_k_one_and_tiny_top_p_are_greedy(model):
    _, _, _, engine = model
    greedy = engine.generate(PROMPTS, SamplingParams(max_new_tokens=8, temperature=0.0))
    for filt in (dict(top_k=1), dict(top_p=1e-6)):
        out = engine.generate(PROMPTS, SamplingParams(max_new_tokens=8, seed=3, **filt))
        assert _tokens(out) == _tokens(greedy)
        # At temperature 1 the reported logprobs are the untruncated ones, as greedy's.
        for (a,), (b,) in zip(out, greedy):
            np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-6)


@pytest.mark.parametrize("model", ["dense"], indirect=True)  # one model suffices
def test_one_step_frequencies_match_softmax(model):
    _, _, _, engine = model
    prompt, n = PROMPTS[0], 3000
    (group,) = engine.generate([prompt], SamplingParams(max_new_tokens=1, seed=0), n=n)
    ids = np.zeros((1, 32), np.int32)
    ids[0, : len(prompt)] = prompt
    mask = (np.arange(32) < len(prompt)).astype(np.int32)[None]
    lp = _log_softmax(engine.graphdef, engine.params, ids, mask)[0, len(prompt) - 1]
    probs = np.exp(np.asarray(lp, np.float64))
    counts = np.bincount([c.token_ids[0] for c in group], minlength=len(probs))
    # Chi-square over tokens expected >= 5 times, the rest pooled into one bin.
    big = probs * n >= 5
    observed = np.append(counts[big], counts[~big].sum())
    expected = np.append(probs[big], probs[~big].sum()) * n
    chi2 = np.sum((observed - expected) ** 2 / expected)
    dof = len(observed) - 1
    # Wilson-Hilferty 99.9% quantile of chi-square(dof).
    z = 3.09
    limit = dof * (1 - 2 / (9 * dof) + z * np.sqrt(2 / (9 * dof))) ** 3
    assert chi2 < limit, (chi2, limit, dof)


def test_prompt_longer_than_context(model):
    _, path, _, _ = model
    opts = dict(max_context=24, min_prompt_bucket=8, min_new_tokens_bucket=8)
    strict = JaxEngine.from_pretrained(path, options=JaxEngineOptions(**opts))
    long_prompt = list(range(1, 30))
    params = SamplingParams(max_new_tokens=4, temperature=0.0)
    with pytest.raises(ValueError, match=r"prompt 0 has 29 tokens.*at most 20 fit"):
        strict.generate([long_prompt], params)
    left = JaxEngine.from_pretrained(path, options=JaxEngineOptions(**opts, truncation="left"))
    assert _tokens(left.generate([long_prompt], params)) == _tokens(
        strict.generate([long_prompt[-20:]], params)
    )


def test_update_weights_swaps_parameters_without_copy(model):
    name, path, _, engine = model
    other = JaxEngine.from_pretrained(path)
    cfg = TINY_CONFIGS[MODELS[name]]
    from pivotrl_jax.models import Transformer

    new_state = nnx.state(Transformer(cfg, rngs=nnx.Rngs(7)))
    new_state = jax.device_put(new_state, other._shardings)  # already where the engine wants it
    other.update_weights(new_state, version="v2")
    for given, held in zip(jax.tree.leaves(new_state), jax.tree.leaves(other.params)):
        assert held is given  # the engine holds the trainer's arrays, not a copy
    (c,) = other.generate([PROMPTS[1]], SamplingParams(max_new_tokens=6, seed=1))[0]
    assert c.weight_version == "v2"
    np.testing.assert_allclose(
        c.logprobs, _full_forward_logprobs(other, PROMPTS[1], c.token_ids), atol=1e-5
    )
    # Back to the checkpoint, from its folder: the original engine's samples again.
    other.update_weights(path, version="v3")
    params = SamplingParams(max_new_tokens=6, seed=1)
    (back,) = other.generate([PROMPTS[1]], params)[0]
    (orig,) = engine.generate([PROMPTS[1]], params)[0]
    assert back.weight_version == "v3" and back.token_ids == orig.token_ids
    with pytest.raises(ValueError, match="shape"):
        bad = jax.tree.map(lambda x: x[..., :1] if x.ndim == 2 else x, new_state)
        other.update_weights(bad, version="bad")


@pytest.mark.parametrize("model", ["dense"], indirect=True)
def test_update_weights_casts_to_the_engine_dtype(model):
    _, path, _, engine = model
    half = JaxEngine.from_pretrained(path, dtype="bfloat16", param_dtype="bfloat16")
    half.update_weights(engine.params, version=1)  # the float32 state, cast on device
    assert {x.dtype for x in jax.tree.leaves(half.params)} == {jnp.dtype(jnp.bfloat16)}
    params = SamplingParams(max_new_tokens=6, temperature=0.0)
    (c,) = half.generate([PROMPTS[1]], params)[0]
    (ref,) = engine.generate([PROMPTS[1]], params)[0]
    assert c.weight_version == 1
    np.testing.assert_allclose(c.logprobs[:1], ref.logprobs[:1], atol=0.1)  # bf16 rounding


def test_rejects_bad_requests(model):
    _, _, _, engine = model
    with pytest.raises(ValueError, match="outside"):
        engine.generate([[1, 96]], SamplingParams(max_new_tokens=2))
    with pytest.raises(ValueError, match="empty"):
        engine.generate([[]], SamplingParams(max_new_tokens=2))
    with pytest.raises(ValueError, match="n must be"):
        engine.generate([[1]], SamplingParams(max_new_tokens=2), n=0)


_SHARDED = textwrap.dedent(
    """
    import json, sys
    from pivotrl_jax.models import make_mesh
    from pivotrl_jax.rollout.base import SamplingParams
    from pivotrl_jax.rollout.jax_engine import JaxEngine
    import jax
    assert len(jax.devices()) == 8
    mesh = make_mesh((2, 4), ("data", "tensor"))
    out = {}
    for path in sys.argv[1:]:
        engine = JaxEngine.from_pretrained(path, mesh=mesh)
        specs = {str(x.sharding.spec) for x in jax.tree.leaves(engine.params)}
        assert any("tensor" in spec for spec in specs), specs  # really split over the mesh
        rows = []
        for params in (SamplingParams(max_new_tokens=8, temperature=0.0),
                       SamplingParams(max_new_tokens=8, seed=4)):
            rows.append([[(c.token_ids, c.logprobs) for c in g]
                         for g in engine.generate(PROMPTS, params, n=2)])
        out[path] = rows
    print(json.dumps(out))
    """
)


@pytest.mark.multidevice
def test_sharded_mesh_matches_one_device(tmp_path):
    paths = []
    for name, cfg_name in sorted(MODELS.items()):
        paths.append(str(tmp_path / name))
        build_reference(TINY_CONFIGS[cfg_name], paths[-1], seed=2)
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
    )
    script = f"PROMPTS = {PROMPTS!r}\n" + _SHARDED
    done = subprocess.run(
        [sys.executable, "-c", script, *paths], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sharded = json.loads(done.stdout.strip().splitlines()[-1])
    for path in paths:
        engine = JaxEngine.from_pretrained(path)
        for i, params in enumerate(
            (
                SamplingParams(max_new_tokens=8, temperature=0.0),
                SamplingParams(max_new_tokens=8, seed=4),
            )
        ):
            for group, remote in zip(engine.generate(PROMPTS, params, n=2), sharded[path][i]):
                for c, (tokens, logprobs) in zip(group, remote):
                    assert list(c.token_ids) == tokens
                    np.testing.assert_allclose(c.logprobs, logprobs, atol=1e-5, rtol=0)
