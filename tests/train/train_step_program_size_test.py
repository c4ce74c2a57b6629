"""The lowered train step (forward, backward, AdamW) does not grow with depth when layers are
scanned: its parameters arrive as one stacked array per leaf of a run of layers, so 2 and 6
layers lower to the same program and the same number of inputs. Unrolled, it grows."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.models.sharding import single_device_mesh
from pivotrl_jax.train import state as st
from pivotrl_jax.train.batching import TrainBatch
from pivotrl_jax.train.losses import LossConfig
from pivotrl_jax.train.optim import OptimConfig, make_optimizer
from pivotrl_jax.train.step import StepConfig, grpo_loss, make_train_step

DENSE = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=48,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
)
MOE = dict(DENSE, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16)


def _lowered(layers: int, scan: bool, **model) -> tuple[int, int]:
    """(lines of the lowered step's StableHLO text, number of its input arrays)."""
    cfg = ModelConfig(**model, num_hidden_layers=layers, scan_layers=scan)
    policy = st.make_policy(cfg, single_device_mesh())
    tx = make_optimizer(OptimConfig())
    step = make_train_step(
        policy, tx, grpo_loss(LossConfig(), on_policy=True, reference=False), StepConfig()
    )
    ints = jax.ShapeDtypeStruct((2, 16), jnp.int32)
    floats = jax.ShapeDtypeStruct((2, 16), jnp.float32)
    batch = TrainBatch(ints, ints, ints, ints, ints, floats, floats, floats, floats, floats)
    state = st.abstract_train_state(policy, tx, jnp.float32)
    text = step.lower(state, batch).as_text()
    return len(text.splitlines()), len(jax.tree.leaves((state, batch)))


@pytest.mark.parametrize("model", [DENSE, MOE], ids=["dense", "moe"])
def test_scanned_step_does_not_grow_with_depth(model):
    lines2, inputs2 = _lowered(2, True, **model)
    lines6, inputs6 = _lowered(6, True, **model)
    assert inputs6 == inputs2
    assert abs(lines6 - lines2) <= 0.02 * lines2, (lines2, lines6)
    unrolled2, _ = _lowered(2, False, **model)
    unrolled6, _ = _lowered(6, False, **model)
    assert unrolled6 > 1.5 * unrolled2, (unrolled2, unrolled6)
