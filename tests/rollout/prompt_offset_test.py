"""`SamplingParams.prompt_offset`: a process generating its slice of a batch draws what one
process generating the whole batch draws for those prompts (both engines' seeding)."""

import dataclasses

import numpy as np
import pytest

from pivotrl_jax.models.testing import TINY_CONFIGS, random_model
from pivotrl_jax.rollout import sglang_engine
from pivotrl_jax.rollout.base import SamplingParams
from pivotrl_jax.rollout.jax_engine import JaxEngine

PROMPTS = [[5, 17, 3], list(range(20, 33)), [90], [7, 7, 7, 7, 7, 41], [11, 12]]


@pytest.mark.slow
def test_jax_engine_slice_with_offset_equals_the_whole_batch():
    engine = JaxEngine(random_model(TINY_CONFIGS["dense_untied_mha"], seed=3))
    params = SamplingParams(temperature=1.0, max_new_tokens=6, seed=7)
    whole = engine.generate(PROMPTS, params, n=3)
    for start, stop in ((0, 2), (2, 5), (3, 4)):
        part = engine.generate(
            PROMPTS[start:stop], dataclasses.replace(params, prompt_offset=start), n=3
        )
        # The same tokens; logprobs to float32 rounding (the smaller batch pads to other shapes).
        assert tokens(part) == tokens(whole[start:stop])
        for got, want in zip(part, whole[start:stop]):
            for a, b in zip(got, want):
                np.testing.assert_allclose(a.logprobs, b.logprobs, rtol=0, atol=1e-5)
    # Without the offset the slice draws other tokens (the check above can fail).
    assert tokens(engine.generate(PROMPTS[2:5], params, n=3)) != tokens(whole[2:5])


def tokens(groups):
    return [[c.token_ids for c in g] for g in groups]


def test_sglang_request_seeds_follow_the_batch_index():
    whole = sglang_engine._jobs(len(PROMPTS), 4, seed=11)
    part = sglang_engine._jobs(3, 4, seed=11, offset=2)
    assert [j.seed for j in part] == [j.seed for j in whole if j.prompt_index >= 2]
    assert [j.prompt_index for j in part] == [i for i in range(3) for _ in range(4)]
    assert len({j.seed for j in whole}) == len(whole)  # every sample its own seed
