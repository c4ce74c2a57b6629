"""The jitted train step and the jitted logprob passes, on the policy's mesh.

    train_step(state, batch) -> (state, metrics)          state donated
    logprobs_fn(params, batch) -> logprobs [B, T]         reference pi_0 or pi_old

Log-probs (and the entropy, from the same logits) come from the final hidden states a chunk of
tokens at a time (logprobs.chunked_logprobs): no [B, T, V] float32 array is ever built.

Gradient accumulation splits the B rows into M micro-batches of B/M rows (strided, row
r -> micro-batch r mod M, so every micro-batch spans every data-parallel device) and runs them
through one `lax.scan`. The objective returns a (sum, count) pair whose count depends only on
masks, so

    grad loss(batch) = (Σ_m grad sum_m) / (Σ_m count_m)

is the one-batch gradient exactly, whatever M is (aggregation.py). A non-finite loss, gradient
or updated state skips the update inside jit: parameters and optimizer state are selected
unchanged, `state.nonfinite` counts it, and the loop stops after a configured number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding

from pivotrl_jax.models.sharding import logical_to_spec
from pivotrl_jax.models.transformer import forward_hidden
from pivotrl_jax.train.aggregation import LossParts, loss_value
from pivotrl_jax.train.batching import TrainBatch
from pivotrl_jax.train.logprobs import chunk_tokens, chunked_logprobs
from pivotrl_jax.train.losses import LossConfig, grpo_objective, merge_metrics
from pivotrl_jax.train.state import Params, Policy, TrainState, abstract_train_state

Array = jax.Array
# objective(logprobs [B, T], entropy [B, T] | None, batch) -> (LossParts, metrics)
Objective = Callable[[Array, Array | None, TrainBatch], tuple[LossParts, dict[str, Array]]]


@dataclasses.dataclass(frozen=True)
class StepConfig:
    micro_batches: int = 1  # M: gradient accumulation steps per update
    entropy_metric: bool = True  # per-token entropy, from the log-probs' own logits pass
    entropy_grad: bool = False  # differentiate the entropy (an entropy bonus in the loss)
    logits_chunk_bytes: int = 32 * 2**20  # float32 logits computed at once (one token chunk)

    def __post_init__(self):
        if self.micro_batches < 1:
            raise ValueError(f"micro_batches must be >= 1, got {self.micro_batches}")
        if self.logits_chunk_bytes < 1:
            raise ValueError(f"logits_chunk_bytes must be >= 1, got {self.logits_chunk_bytes}")


def grpo_loss(cfg: LossConfig, *, on_policy: bool = False, reference: bool = True) -> Objective:
    """losses.grpo_objective on a TrainBatch.

    on_policy: pi_old is the step's own log-probs, detached. With one update per rollout batch
        the parameters being differentiated are pi_old, so this is the recomputed pi_old
        without a second forward pass.
    reference: the batch's ref_logprobs are log pi_0: the KL to pi_0 is measured (and enters
        the loss when beta > 0). Without a reference no KL is reported.
    """
    if cfg.beta > 0.0 and not reference:
        raise ValueError("beta > 0 needs the reference pi_0's logprobs")

    def objective(logprobs, entropy, batch):
        old = jax.lax.stop_gradient(logprobs) if on_policy else batch.old_logprobs
        return grpo_objective(
            cfg,
            logprobs,
            old,
            batch.advantages,
            batch.loss_mask,
            ref_logprobs=batch.ref_logprobs if reference else None,
            behaviour_logprobs=batch.behaviour_logprobs,
            entropy=entropy,
            segment_ids=batch.segment_ids,
        )

    return objective


def batch_sharding(policy: Policy, shape: tuple[int, ...], axis: int = 0) -> NamedSharding:
    """Rows (dimension `axis`) over the batch mesh axes, everything else replicated."""
    names: list[str | None] = [None] * len(shape)
    names[axis] = "batch"
    return NamedSharding(policy.mesh, logical_to_spec(names, shape, policy.mesh, policy.rules))


def split_micro(batch: TrainBatch, m: int) -> TrainBatch:
    """[B, ...] -> [M, B/M, ...], row r to micro-batch r mod M."""

    def split(x):
        b = x.shape[0]
        if b % m:
            raise ValueError(f"batch of {b} rows does not split into {m} micro-batches")
        return jnp.swapaxes(x.reshape(b // m, m, *x.shape[1:]), 0, 1)

    return jax.tree.map(split, batch)


def merge_micro(x: Array) -> Array:
    """Inverse of split_micro for one array: [M, B/M, ...] -> [B, ...]."""
    m, bm = x.shape[:2]
    return jnp.swapaxes(x, 0, 1).reshape(m * bm, *x.shape[2:])


def policy_logprobs(
    graphdef,
    params: Params,
    batch: TrainBatch,
    with_entropy: bool,
    chunk_bytes: int = StepConfig.logits_chunk_bytes,
    entropy_grad: bool = False,
) -> tuple[Array, Array | None]:
    """log pi(target_t) [B, T] and, optionally, the entropy [B, T] of pi at each position."""
    hidden, head = forward_hidden(
        graphdef, params, batch.input_ids, batch.positions, batch.segment_ids, batch.parent_ids
    )  # [B, T, D], [D, V]
    return chunked_logprobs(
        hidden,
        head,
        batch.targets,
        chunk=chunk_tokens(head.shape[-1], chunk_bytes),
        with_entropy=with_entropy,
        entropy_grad=entropy_grad,
    )


def _constrain(tree: Any, shardings: Any) -> Any:
    return jax.tree.map(jax.lax.with_sharding_constraint, tree, shardings)


def accumulate_gradients(
    policy: Policy,
    objective: Objective,
    cfg: StepConfig,
    params: Params,
    batch: TrainBatch,
) -> tuple[Params, LossParts, dict[str, Array]]:
    """(grad of the full-batch loss, the full-batch (sum, count), merged metrics).

    Gradients accumulate in float32 whatever the master dtype, and are returned in it.
    """

    def loss_fn(p, mb):
        logprobs, entropy = policy_logprobs(
            policy.graphdef,
            p,
            mb,
            cfg.entropy_metric or cfg.entropy_grad,
            cfg.logits_chunk_bytes,
            cfg.entropy_grad,
        )
        parts, metrics = objective(logprobs, entropy, mb)
        return parts.sum, (parts.count, metrics)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    m = cfg.micro_batches
    if m == 1:
        (total, (count, metrics)), grads = grad_fn(params, batch)
        grads = jax.tree.map(lambda g: g.astype(jnp.float32), grads)
    else:
        micro = split_micro(batch, m)
        micro = jax.tree.map(
            lambda x: jax.lax.with_sharding_constraint(x, batch_sharding(policy, x.shape, axis=1)),
            micro,
        )

        def body(carry, mb):
            g_acc, s_acc, c_acc = carry
            (s, (c, mets)), g = grad_fn(params, mb)
            # Accumulate in float32 (bf16 master weights would otherwise round each add).
            g_acc = jax.tree.map(lambda a, x: a + x.astype(jnp.float32), g_acc, g)
            g_acc = _constrain(g_acc, policy.param_shardings)
            return (g_acc, s_acc + s, c_acc + c), mets

        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
        zeros = _constrain(zeros, policy.param_shardings)
        init = (zeros, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))
        (grads, total, count), stacked = jax.lax.scan(body, init, micro)
        metrics = merge_metrics([jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(m)])
    # d(sum / count) = d(sum) / count: count depends on masks only. count 0 gives zero grads.
    scale = jnp.where(count > 0, 1.0 / jnp.where(count > 0, count, 1.0), 0.0)
    grads = jax.tree.map(lambda g, p: (g * scale).astype(p.dtype), grads, params)
    return grads, LossParts(total, count), metrics


def _all_finite(tree: Any) -> Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def make_train_step(
    policy: Policy,
    tx: optax.GradientTransformation,
    objective: Objective,
    cfg: StepConfig,
    schedule: optax.Schedule | None = None,
    master_dtype: jnp.dtype = jnp.float32,
) -> Callable[[TrainState, TrainBatch], tuple[TrainState, dict[str, Array]]]:
    """`train_step(state, batch) -> (state, metrics)`, jitted, with the state donated."""

    def train_step(state: TrainState, batch: TrainBatch) -> tuple[TrainState, dict[str, Array]]:
        grads, parts, metrics = accumulate_gradients(policy, objective, cfg, state.params, batch)
        loss = loss_value(parts)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # Finite loss and gradients can still overflow the update or the moments (g^2): the
        # new state must be finite too, or it is not taken (and never reaches a checkpoint).
        finite = jnp.isfinite(loss) & _all_finite(grads) & _all_finite((params, opt_state))

        def keep(new, old):
            return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)

        new_state = TrainState(
            step=state.step + finite.astype(jnp.int32),
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            rng=state.rng,
            nonfinite=state.nonfinite + (~finite).astype(jnp.int32),
        )
        metrics = dict(metrics)
        metrics.update(
            {
                "loss": loss,
                "grad_norm": optax.tree.norm(grads),
                "update_norm": optax.tree.norm(updates),
                "update_skipped": (~finite).astype(jnp.int32),
                "nonfinite_total": new_state.nonfinite,
            }
        )
        if schedule is not None:
            metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
        return new_state, metrics

    abstract = abstract_train_state(policy, tx, master_dtype)
    shardings = jax.tree.map(lambda x: x.sharding, abstract)
    return jax.jit(train_step, donate_argnums=0, out_shardings=(shardings, None))


def make_logprobs_fn(
    policy: Policy,
    micro_batches: int = 1,
    chunk_bytes: int = StepConfig.logits_chunk_bytes,
) -> Callable[[Params, TrainBatch], Array]:
    """`logprobs_fn(params, batch) -> [B, T]` float32, jitted, micro-batched like the step.

    The reference pi_0 calls it with its own (frozen, possibly bfloat16) parameters; the loop
    calls it with the policy's parameters to recompute old logprobs. Nothing is donated.
    """

    def fn(params: Params, batch: TrainBatch) -> Array:
        if micro_batches == 1:
            return policy_logprobs(policy.graphdef, params, batch, False, chunk_bytes)[0]
        micro = split_micro(batch, micro_batches)

        def body(_, mb):
            return None, policy_logprobs(policy.graphdef, params, mb, False, chunk_bytes)[0]

        _, out = jax.lax.scan(body, None, micro)  # [M, B/M, T]
        return merge_micro(out)

    return jax.jit(fn)


def place_batch(batch: TrainBatch, policy: Policy) -> TrainBatch:
    """Host batch -> device arrays with rows over the batch mesh axes."""
    return jax.tree.map(lambda x: jax.device_put(x, batch_sharding(policy, x.shape)), batch)
