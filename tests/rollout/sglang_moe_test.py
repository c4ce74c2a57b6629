"""SglangEngine against a real CPU SGLang server serving a tiny random Qwen3-MoE.

Checks that sampled logprobs match a transformers float32 forward before and after a weight
swap (so router and expert tensors are synced), then that stopping the server ends its whole
process group.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from sglang_support import (
    build_model,
    greedy_reference,
    launch_cpu_server,
    max_logprob_diff,
    random_prompts,
    require_sglang_env,
)

from pivotrl_jax.rollout.base import SamplingParams
from pivotrl_jax.rollout.server import is_healthy
from pivotrl_jax.rollout.sglang_engine import SglangEngine

pytestmark = [pytest.mark.sglang, pytest.mark.slow]
TOL = 1e-5


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    require_sglang_env()
    root = tmp_path_factory.mktemp("sglang_moe")
    models = {"a": build_model("moe", root / "a", seed=10), "b": build_model("moe", root / "b", 11)}
    server = launch_cpu_server(root / "a", root / "server.log", weight_version="0")
    yield server, models, root
    server.stop()


def test_moe_sampled_and_greedy_logprobs_match_transformers(served):
    server, models, _ = served
    engine = SglangEngine([server.url])
    prompts = random_prompts([4, 21, 33], seed=20)
    groups = engine.generate(prompts, SamplingParams(max_new_tokens=10), n=2)
    assert max_logprob_diff(models["a"], prompts, groups) <= TOL
    greedy = engine.generate(prompts[:1], SamplingParams(temperature=0.0, max_new_tokens=8))
    tokens, logps = greedy_reference(models["a"], prompts[0], 8)
    assert greedy[0][0].token_ids == tuple(tokens)
    np.testing.assert_allclose(greedy[0][0].logprobs, logps, atol=TOL, rtol=0)
    engine.close()


def test_moe_weight_swap_follows_new_router_and_experts(served):
    server, models, root = served
    engine = SglangEngine([server.url])
    prompts = random_prompts([6, 15], seed=21)
    engine.update_weights(root / "b", version=3)
    groups = engine.generate(prompts, SamplingParams(max_new_tokens=8), n=2)
    assert all(c.weight_version == 3 for g in groups for c in g)
    assert max_logprob_diff(models["b"], prompts, groups) <= TOL
    assert max_logprob_diff(models["a"], prompts, groups) > 1e-2
    engine.close()


def test_moe_refit_from_the_project_hf_export(served):
    """Router and expert tensors survive our export: logprobs follow the exported weights."""
    from pivotrl_jax.models.weights import export_hf, load_hf

    server, models, root = served
    engine = SglangEngine([server.url])
    model, config = load_hf(root / "a")
    engine.update_weights(lambda: export_hf(model, config, root / "export"), version="jax-a")
    prompts = random_prompts([7, 19], seed=22)
    groups = engine.generate(prompts, SamplingParams(max_new_tokens=8), n=2)
    assert all(c.weight_version == "jax-a" for g in groups for c in g)
    assert max_logprob_diff(models["a"], prompts, groups) <= TOL
    assert max_logprob_diff(models["b"], prompts, groups) > 1e-2
    engine.close()


def group_gone(pgid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)  # orphans are reaped by init a moment after they die
    return False


def test_stop_ends_the_whole_process_group(served):
    """Last in the module: it stops the server."""
    server, _, _ = served
    server.stop()
    assert not server.alive()
    assert group_gone(server.pid, within_s=10.0)  # scheduler and detokenizer too
    assert not is_healthy(server.url)
