"""benchmarks/memory_plan.py against a measured run of the same small config on 8 simulated
devices: the resident bytes it predicts per device (parameters, optimizer state, reference,
batch) are what the materialised arrays occupy on a device, and its temporaries are those of the
train step compiled for the real arrays (which then runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.models.testing import write_hf_config

REPO = Path(__file__).resolve().parents[2]
SCRIPT = textwrap.dedent("""
    import json, os, runpy, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, jax.numpy as jnp
    from pivotrl_jax.config import load_config
    from pivotrl_jax.train import state as st

    tool = runpy.run_path(sys.argv[1])
    cfg = load_config(sys.argv[2], json.loads(sys.argv[3]))
    predicted = tool["plan"](cfg)

    built = tool["build"](cfg)
    state_, step = built.state, built.step
    params = st.init_params(built.policy, 0, built.gcfg.optim.dtype)
    reference = st.create_reference(built.policy, params, built.gcfg.reference_dtype)
    state = st.create_train_state(built.policy, built.tx, params, 0)
    assert jax.tree.structure(state) == jax.tree.structure(state_)
    batch = jax.tree.map(lambda s: jax.device_put(jnp.zeros(s.shape, s.dtype), s.sharding),
                         built.batch)
    temp = step.lower(state, batch).compile().memory_analysis().temp_size_in_bytes
    state, metrics = step(state, batch)  # it runs
    jax.block_until_ready(state)

    device = jax.devices()[0]
    def on_device(tree):
        return sum(s.data.nbytes for x in jax.tree.leaves(tree) for s in x.addressable_shards
                   if s.device == device)
    measured = {"params": on_device(state.params), "opt_state": on_device(state.opt_state),
                "reference": on_device(reference.params), "batch": on_device(batch),
                "train_step_temp": int(temp)}
    print(json.dumps({"predicted": predicted, "measured": measured,
                      "steps": int(state.step) + int(state.nonfinite)}))
""")


@pytest.mark.multidevice
@pytest.mark.slow
def test_plan_matches_a_measured_run(tmp_path):
    config = ModelConfig(vocab_size=128, hidden_size=32, intermediate_size=48,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=8, num_experts=8, num_experts_per_tok=2,
                         moe_intermediate_size=16, norm_topk_prob=True)  # fmt: skip
    write_hf_config(config, tmp_path / "model")
    overrides = [
        f"model_dir={tmp_path / 'model'}",
        "mesh_shape=(1,2,1,4)",
        "engine.routed_experts=True",
        "train.length_buckets=(64,128)",
        "train.micro_batches=2",
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(REPO / "benchmarks/memory_plan.py"),
         "configs/train.py:tiny", json.dumps(overrides)],
        capture_output=True, text=True, env=env, timeout=1200, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    predicted, measured = out["predicted"], out["measured"]
    assert predicted["devices"] == 8 and out["steps"] == 1
    assert predicted["batch_shape"] == {
        "rows": 16, "length": 128, "micro_batches": 2, "rows_per_micro_batch": 8,
        "routed_experts": True,
    }  # fmt: skip
    for key, value in measured.items():
        assert predicted["per_device_bytes"][key] == value, key
    # The frozen routers have no optimizer moments: Adam's state is twice the trained params.
    assert 0 < predicted["per_device_bytes"]["opt_state"] < 2 * measured["params"]

    # The command line prints the same numbers as one JSON line.
    cli = subprocess.run(
        [sys.executable, "benchmarks/memory_plan.py", "--config", "configs/train.py:tiny",
         *[f"--config.{o}" for o in overrides]],
        capture_output=True, text=True, env=env, timeout=1200, cwd=REPO,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr[-3000:]
    line = json.loads(cli.stdout.strip().splitlines()[-1])
    assert line["per_device_bytes"] == predicted["per_device_bytes"]
    assert line["per_device_total_gib"] >= sum(measured.values()) / 2**30 - 1e-3


EXTRAPOLATE = textwrap.dedent("""
    import json, os, runpy, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    from pivotrl_jax.config import load_config

    tool = runpy.run_path(sys.argv[1])
    cfg = load_config(sys.argv[2], json.loads(sys.argv[3]))
    print(json.dumps({"compiled": tool["plan"](cfg), "line": tool["plan"](cfg, (2, 3))}))
""")


@pytest.mark.multidevice
@pytest.mark.slow
def test_temporaries_extrapolated_from_two_depths_match_the_full_compile(tmp_path):
    """--layers 2,3 on a 4-layer MoE: the temporaries on the line through the 2- and 3-layer
    compiles are those of the 4-layer compile (the layer scan adds the same bytes per layer),
    and the resident state is the full model's."""
    config = ModelConfig(vocab_size=128, hidden_size=32, intermediate_size=48,
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=8, num_experts=8, num_experts_per_tok=2,
                         moe_intermediate_size=16, norm_topk_prob=True)  # fmt: skip
    write_hf_config(config, tmp_path / "model")
    overrides = [f"model_dir={tmp_path / 'model'}", "mesh_shape=(1,2,1,4)",
                 "engine.routed_experts=True", "train.length_buckets=(64,)",
                 "train.micro_batches=2", "model_overrides.remat=full"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, "-c", EXTRAPOLATE, str(REPO / "benchmarks/memory_plan.py"),
         "configs/train.py:tiny", json.dumps(overrides)],
        capture_output=True, text=True, env=env, timeout=1200, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    compiled, line = out["compiled"]["per_device_bytes"], out["line"]["per_device_bytes"]
    assert out["line"]["temporaries"] == "extrapolated"
    assert out["line"]["temporaries_fit"]["layers"] == [2, 3]
    for key in ("params", "opt_state", "reference", "batch"):
        assert line[key] == compiled[key], key
    for key in ("train_step_temp", "logprobs_temp"):
        assert line[key] == pytest.approx(compiled[key], rel=0.01), key
