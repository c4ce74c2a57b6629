"""The train step on a mesh of 8 simulated CPU devices equals the step on one device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, jax.numpy as jnp, numpy as np, optax
    from pivotrl_jax.models.config import ModelConfig
    from pivotrl_jax.models.sharding import make_mesh, single_device_mesh
    from pivotrl_jax.train import state as st
    from pivotrl_jax.train.batching import Sequence, make_batch
    from pivotrl_jax.train.losses import LossConfig
    from pivotrl_jax.train.optim import OptimConfig, make_optimizer
    from pivotrl_jax.train.step import (StepConfig, grpo_loss, make_logprobs_fn,
                                        make_train_step, place_batch)

    assert jax.device_count() == 8
    cfg = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, head_dim=8,
                      num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
                      decoder_sparse_step=2)
    rng = np.random.default_rng(0)
    seqs = []
    for _ in range(16):
        lp, lr = int(rng.integers(2, 9)), int(rng.integers(1, 8))
        seqs.append(Sequence(tuple(int(x) for x in rng.integers(1, 64, lp)),
                             tuple(int(x) for x in rng.integers(1, 64, lr)),
                             tuple(float(x) for x in -rng.uniform(3, 5, lr)),
                             float(rng.normal())))
    host_batch = make_batch(seqs, length_buckets=(16,), row_multiple=16)
    loss = LossConfig(beta=0.05)
    host_params = None
    results, placement = {}, {}
    meshes = {
        "one": single_device_mesh(),
        "data2_fsdp4": make_mesh((2, 4, 1, 1)),
        "fsdp2_tensor4": make_mesh((1, 2, 4, 1)),
        "data2_expert4": make_mesh((2, 1, 1, 4)),
    }
    for name, mesh in meshes.items():
        policy = st.make_policy(cfg, mesh)
        params = st.init_params(policy, 0, jnp.float32)
        if host_params is None:
            host_params = jax.device_get(params)
        params = st.place_params(policy, host_params, jnp.float32)
        ref = st.create_reference(policy, host_params, "float32")
        batch = place_batch(host_batch, policy)
        lp = make_logprobs_fn(policy, micro_batches=2)
        batch = batch.replace(ref_logprobs=lp(ref.params, batch) - 0.1 * batch.loss_mask,
                              old_logprobs=lp(params, batch))
        tx = make_optimizer(OptimConfig(learning_rate=1e-4))
        state = st.create_train_state(policy, tx, params, 0)
        step = make_train_step(policy, tx, grpo_loss(loss), StepConfig(micro_batches=2))
        metrics = []
        for _ in range(2):
            state, m = step(state, batch)
            metrics.append({k: float(v) for k, v in m.items()})
        results[name] = (jax.device_get(state.params), metrics,
                         np.asarray(batch.ref_logprobs))
        placement[name] = {
            "lm_head": str(state.params["lm_head"].sharding.spec),
            "expert_gate": str(state.params["stacks"][1]["mlp"]["gate_proj"].sharding.spec),
            "mu_lm_head": str(optax.tree_utils.tree_get(state.opt_state, "mu")["lm_head"]
                              .sharding.spec),
            "devices": len(state.params["lm_head"].sharding.device_set),
        }
        for a, b in zip(jax.tree.leaves(ref.params), jax.tree.leaves(host_params)):
            np.testing.assert_array_equal(np.asarray(a), b)  # the reference never moved
    base_params, base_metrics, base_ref = results["one"]
    diffs = {}
    for name, (params, metrics, ref_lp) in results.items():
        d = max(float(np.max(np.abs(a - b)))
                for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(base_params)))
        dm = max(abs(m[k] - b[k]) / max(1.0, abs(b[k]))
                 for m, b in zip(metrics, base_metrics) for k in b)
        moved = max(float(np.max(np.abs(a - b)))
                    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(host_params)))
        diffs[name] = {"params": d, "metrics": dm, "moved": moved,
                       "ref_logprobs": float(np.max(np.abs(ref_lp - base_ref)))}
    print("RESULT" + json.dumps({"diffs": diffs, "placement": placement}))
    """
)


@pytest.mark.multidevice
@pytest.mark.slow
def test_eight_devices_equal_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=1500
    )
    assert out.returncode == 0, out.stderr[-4000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT"))
    result = json.loads(line[len("RESULT") :])
    placement = result["placement"]
    # Parameters and their Adam moments are really sharded on the meshes.
    assert placement["data2_fsdp4"]["lm_head"] == "P('fsdp', 'tensor')"
    assert placement["data2_fsdp4"]["mu_lm_head"] == placement["data2_fsdp4"]["lm_head"]
    assert placement["fsdp2_tensor4"]["lm_head"] == "P('fsdp', 'tensor')"
    assert "expert" in placement["data2_expert4"]["expert_gate"]
    assert placement["data2_fsdp4"]["devices"] == 8
    for name, d in result["diffs"].items():
        assert d["moved"] > 1e-4, name  # two real updates happened
        assert d["params"] <= 1e-5, (name, d)
        assert d["metrics"] <= 1e-5, (name, d)
        assert d["ref_logprobs"] <= 1e-5, (name, d)
