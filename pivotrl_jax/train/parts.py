"""What a GRPO run wires together (`Parts`): the policy and its optimizer state, the frozen
reference (only when the loss or a KL metric reads it), the jitted step and log-prob pass, the
rollout engine with its weight sync, the verifiers and the data."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.train.bookkeeping import Progress
from pivotrl_jax.train.grpo_config import GrpoConfig
from pivotrl_jax.train.optim import make_optimizer, make_schedule
from pivotrl_jax.train.state import (
    Params,
    Policy,
    Reference,
    TrainState,
    create_reference,
    create_train_state,
    make_policy,
    place_params,
)
from pivotrl_jax.train.step import grpo_loss, make_logprobs_fn, make_train_step
from pivotrl_jax.train.weight_sync import WEIGHT_SYNC, WeightSync


@dataclasses.dataclass
class Parts:
    """What the loop wires together; built by `build_parts` (or by a test with its own engine)."""

    cfg: GrpoConfig
    policy: Policy
    state: TrainState
    reference: Reference | None
    train_step: Callable
    logprobs_fn: Callable
    engine: Any
    sync: WeightSync
    decode: Callable[[Sequence[int]], str]
    stop_ids: tuple[int, ...]
    scorer: Any
    data: Any  # grain iterator of pivot batches
    schedule: Callable
    progress: Progress = dataclasses.field(default_factory=lambda: Progress())
    tokenizer: Any = None  # renders chat histories (end-to-end episodes)


def build_parts(
    cfg: GrpoConfig,
    mesh,
    engine,
    decode,
    stop_ids,
    scorer,
    data,
    initial_params: Params,
    model_config: ModelConfig,
) -> Parts:
    """Policy, optimizer state and reference on `mesh` from `initial_params` (pi_0)."""
    model_config = model_config.replace(param_dtype=cfg.optim.master_dtype)
    policy = make_policy(model_config, mesh)
    tx = make_optimizer(cfg.optim)
    schedule = make_schedule(cfg.optim)
    params = place_params(policy, initial_params, cfg.optim.dtype)
    reference = (
        create_reference(policy, initial_params, cfg.reference_dtype)
        if cfg.need_reference
        else None
    )
    state = create_train_state(policy, tx, params, cfg.seed)
    objective = grpo_loss(
        cfg.loss, on_policy=cfg.pi_old == "current", reference=reference is not None
    )
    step = make_train_step(policy, tx, objective, cfg.step, schedule, master_dtype=cfg.optim.dtype)
    return Parts(
        cfg,
        policy,
        state,
        reference,
        step,
        make_logprobs_fn(policy, cfg.step.micro_batches, cfg.step.logits_chunk_bytes),
        engine,
        WEIGHT_SYNC.get(cfg.engine.name),
        decode,
        tuple(stop_ids),
        scorer,
        data,
        schedule,
    )
