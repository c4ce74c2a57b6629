"""Supervised fine-tuning on the SFT trajectories' assistant turns: the paper's SFT baseline.

Each candidate record (one assistant turn of a trajectory) is a sequence

    prompt_ids (chat-templated state)  +  completion_ids (assistant span, <|im_end|> included)

and the loss is the negative log-likelihood of the completion tokens only (token mean over the
batch), so system, user and tool tokens are context, never targets:

    L = - Σ_b Σ_t m_bt log pi(y_bt) / Σ_b Σ_t m_bt,   m = 1 on assistant-span targets

It runs through the same jitted step, batching, checkpointing and metrics as GRPO.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pivotrl_jax import faults
from pivotrl_jax.models.stacks import layer_kinds
from pivotrl_jax.train import metrics as metrics_lib
from pivotrl_jax.train.aggregation import LossParts, as_float
from pivotrl_jax.train.batching import Sequence as Seq
from pivotrl_jax.train.batching import TrainBatch, make_batch
from pivotrl_jax.train.bookkeeping import check_finite
from pivotrl_jax.train.checkpoint import Checkpointer
from pivotrl_jax.train.optim import OptimConfig, make_optimizer
from pivotrl_jax.train.state import Policy, TrainState, abstract_train_state
from pivotrl_jax.train.step import Objective, place_batch

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SftConfig:
    steps: int  # optimizer steps (batches)
    batch_size: int = 32  # sequences per batch
    length_buckets: tuple[int, ...] = (512, 1024, 2048)
    micro_batches: int = 1
    pack: bool = False
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    max_nonfinite: int = 3  # stop (TrainingDiverged) after this many skipped non-finite updates
    tensorboard: bool = True
    progress: bool = True


def sft_objective() -> Objective:
    """Token-mean NLL of the assistant-span targets (batch.loss_mask)."""

    def objective(logprobs: Array, entropy: Array | None, batch: TrainBatch):
        m = as_float(batch.loss_mask)  # float32 sums
        n = jnp.sum(m)
        metrics = {"tokens": n, "loss/count": n}
        if entropy is not None:
            metrics["entropy/mean"] = jnp.sum(entropy * m) / jnp.maximum(n, 1.0)
        return LossParts(-jnp.sum(as_float(logprobs) * m), n), metrics

    return objective


def record_sequence(record: Mapping[str, Any], max_len: int) -> Seq | None:
    """A candidate record as an SFT sequence; None when it lacks tokens or exceeds max_len."""
    prompt, completion = record.get("prompt_ids"), record.get("completion_ids")
    if prompt is None or completion is None or not len(prompt) or not len(completion):
        return None
    if len(prompt) + len(completion) > max_len:
        return None
    prompt = tuple(int(t) for t in prompt)
    completion = tuple(int(t) for t in completion)
    mask = record.get("completion_mask")  # whole-trajectory records: assistant spans only
    mask = None if mask is None else tuple(float(m) for m in mask)
    return Seq(prompt, completion, (0.0,) * len(completion), 0.0, mask)


def run_sft(
    cfg: SftConfig,
    optim: OptimConfig,
    policy: Policy,
    state: TrainState,
    train_step: Callable,
    data: Any,  # grain iterator of {"records": [...]} batches (get_state / set_state)
    out_dir: str | os.PathLike,
    row_multiple: int = 1,
) -> tuple[TrainState, dict[str, Any]]:
    """SFT for `cfg.steps` batches from the latest checkpoint in `out_dir` (or from scratch)."""
    from tqdm import tqdm

    workdir = Path(out_dir)
    ckpt = Checkpointer(workdir / "checkpoints", keep=cfg.keep_checkpoints)
    start = ckpt.latest_step()
    if start is not None:
        abstract = abstract_train_state(policy, make_optimizer(optim), optim.dtype)
        state, meta = ckpt.restore(start, abstract, layer_kinds(policy.config))
        data.set_state(meta["data_state"])
    first = start or 0
    writer = metrics_lib.MetricsWriter(workdir, cfg.tensorboard, resume_step=start)
    max_len = max(cfg.length_buckets)
    skipped, last = 0, {}
    try:
        for it in tqdm(
            range(first, cfg.steps),
            initial=first,
            total=cfg.steps,
            disable=not cfg.progress,
            desc="sft",
        ):
            timer = metrics_lib.StepTimer()
            with timer("data"):
                seqs: list[Seq] = []
                while not seqs:
                    rows = next(data)["records"]
                    seqs = [s for r in rows if (s := record_sequence(r, max_len)) is not None]
                    skipped += len(rows) - len(seqs)
                batch = place_batch(
                    make_batch(
                        seqs,
                        length_buckets=cfg.length_buckets,
                        row_multiple=row_multiple,
                        max_rows=cfg.batch_size,
                        pack=cfg.pack,
                        pad_rows=True,
                    ),
                    policy,
                )
            with timer("update"):
                state, m = train_step(state, batch)
                last = metrics_lib.scalars(m)
            tokens = float(np.sum(np.asarray(batch.segment_ids) > 0))
            last.update(timer.split())
            last["update/tokens_per_s"] = tokens / timer.seconds["update"]
            last["data/skipped_records"] = float(skipped)
            writer.write(it + 1, last)
            faults.point("sft.step_done")
            check_finite(int(state.nonfinite), cfg.max_nonfinite, it + 1, ckpt.latest_step())
            if (it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.steps:
                ckpt.save(it + 1, state, {"data_state": data.get_state(), "iteration": it + 1})
    finally:
        writer.close()
        ckpt.close()
    return state, {"steps": cfg.steps, "resumed_from": first, "last": last}


def nll(
    logprobs_fn: Callable,
    params: Any,
    seqs: Sequence[Seq],
    policy: Policy,
    length_buckets: Sequence[int],
) -> float:
    """Token-mean NLL of `seqs`' completions under `params` (evaluation helper)."""
    batch = place_batch(make_batch(seqs, length_buckets=length_buckets), policy)
    lp = np.asarray(logprobs_fn(params, batch))
    mask = np.asarray(batch.loss_mask)
    return float(-(lp * mask).sum() / mask.sum())
