"""MoE routing replay against a real CPU SGLang server started with
--enable-return-routed-experts: the per-token expert ids it returns, replayed in the trainer's
forward on the same weights, give the server's log-probs; the trainer's router agrees with the
server's; and the replayed ids are really what the trainer uses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from sglang_support import build_model, launch_cpu_server, random_prompts, require_sglang_env

from pivotrl_jax.models.moe_routing import router_agreement
from pivotrl_jax.models.sharding import single_device_mesh
from pivotrl_jax.models.weights import load_hf
from pivotrl_jax.rollout.base import SamplingParams
from pivotrl_jax.rollout.sglang_engine import SglangEngine, SglangEngineOptions
from pivotrl_jax.train import state as st
from pivotrl_jax.train.batching import Sequence, make_batch
from pivotrl_jax.train.step import policy_logprobs

pytestmark = [pytest.mark.sglang, pytest.mark.slow]
TOL = 1e-5
LAYERS, TOP_K, EXPERTS = 2, 2, 4  # sglang_support.build_model("moe")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    require_sglang_env()
    root = tmp_path_factory.mktemp("sglang_replay")
    build_model("moe", root / "model", seed=30)
    server = launch_cpu_server(root / "model", root / "server.log", routed_experts=True)
    yield server, root / "model"
    server.stop()


def test_replayed_routing_gives_the_servers_logprobs(served):
    server, folder = served
    engine = SglangEngine([server.url], options=SglangEngineOptions(routed_experts_top_k=TOP_K))
    prompts = random_prompts([5, 17, 30], seed=31)
    groups = engine.generate(prompts, SamplingParams(max_new_tokens=12), n=2)
    engine.close()
    seqs = []
    for prompt, group in zip(prompts, groups):
        for c in group:
            assert c.routed_experts.shape == (len(prompt) + len(c.token_ids) - 1, LAYERS, TOP_K)
            assert c.routed_experts.min() >= 0 and c.routed_experts.max() < EXPERTS
            seqs.append(Sequence(tuple(prompt), c.token_ids, c.logprobs, 1.0,
                                 routed_experts=c.routed_experts))  # fmt: skip

    model, config = load_hf(folder)
    policy = st.make_policy(config, single_device_mesh())
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    batch = jax.tree.map(jnp.asarray, make_batch(seqs, length_buckets=(64,)))
    logprobs, _, stats = policy_logprobs(policy.graphdef, params, batch, False)
    gap = jnp.abs((logprobs - batch.behaviour_logprobs) * batch.loss_mask)
    assert float(gap.max()) <= TOL

    # The trainer's own router picks what the server's did (float32 on both sides).
    hits, slots = router_agreement(stats.chosen, jnp.moveaxis(batch.routed_experts, 2, 0), EXPERTS)
    assert float(slots) == sum(s.routed_experts.size for s in seqs)
    assert float(hits) == float(slots)

    # The forced ids are what the forward uses: other experts give other log-probs.
    other = jnp.where(batch.routed_experts >= 0, (batch.routed_experts + 1) % EXPERTS, -1)
    moved, _, _ = policy_logprobs(policy.graphdef, params, batch.replace(routed_experts=other),
                                  False)  # fmt: skip
    assert float(jnp.abs((moved - logprobs) * batch.loss_mask).max()) > 1e-2
    assert np.isfinite(np.asarray(moved)).all()
