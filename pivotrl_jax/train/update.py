"""From trainer sequences to an update: batch assembly, the log-prob passes the update needs,
the update step(s), the weight sync, and what they measured.

Batch assembly lays the sequences out (batching.make_batch: prefix-shared groups packed into as
many rows as they need, rounded up to a row bucket so that the step compiles a bounded number
of times) and fills only what the objective reads: pi_old with a forward pass only in
"recompute" mode (else it is the step's own detached log-probs or the engine's), and pi_0's
log-probs only when a reference is loaded (beta > 0 or the KL metric asked for).
"""

from __future__ import annotations

import math
from pathlib import Path

import jax

from pivotrl_jax import distributed
from pivotrl_jax.train import metrics as metrics_lib
from pivotrl_jax.train.batching import Sequence as Seq
from pivotrl_jax.train.batching import TrainBatch
from pivotrl_jax.train.parts import Parts
from pivotrl_jax.train.placement import batch_metrics, local_batch, padding_rows, place_rows
from pivotrl_jax.train.state import Policy


def data_parallel(policy: Policy) -> int:
    """Devices the batch rows are split over."""
    return math.prod(policy.mesh.shape[a] for a in policy.rules.batch if a in policy.mesh.shape)


def assemble(parts: Parts, seqs: list[Seq], max_rows: int) -> tuple[TrainBatch, TrainBatch] | None:
    """(this process's host rows, the global device batch with the old / reference log-probs the
    objective reads); None when no process has a sequence (placement.py)."""
    cfg = parts.cfg
    host = local_batch(
        seqs,
        length_buckets=cfg.buckets(),
        row_multiple=cfg.step.micro_batches * data_parallel(parts.policy),
        max_rows=max_rows,
        pack=cfg.pack or cfg.share_prefix,
        share_prefix=cfg.share_prefix,
        pad_rows=cfg.row_buckets_per_octave > 0,
        rows_per_octave=max(cfg.row_buckets_per_octave, 1),
    )
    if host is None:
        return None
    return host, device_batch(parts, host)


def device_batch(parts: Parts, host: TrainBatch) -> TrainBatch:
    """This process's host rows -> the global device batch with the old / reference log-probs
    the objective reads."""
    batch: TrainBatch = place_rows(host, parts.policy)
    if parts.cfg.pi_old == "recompute":
        batch = batch.replace(old_logprobs=parts.logprobs_fn(parts.state.params, batch))
    if parts.reference is not None:
        batch = batch.replace(ref_logprobs=parts.logprobs_fn(parts.reference.params, batch))
    return batch


def compile_rows(parts: Parts, rows: tuple[int, ...]) -> None:
    """Compiles the update's programs (log-prob passes and step) for batches of each row count
    in `rows` at the one configured row length (GrpoConfig checks there is one), before the
    first iteration: each compiled step keeps 50-100 MiB of a CPU process's memory
    (docs/reliability.md), so a count first met late in a run would raise its memory then.
    Runs them on all-padding batches and a copy of the state, which it drops: the run's state
    is untouched."""
    cfg = parts.cfg
    multiple = cfg.step.micro_batches * data_parallel(parts.policy)
    n = distributed.process_count()
    for B in rows:
        if B % multiple or B % n:
            raise ValueError(
                f"train.compile_rows: {B} rows is not a multiple of {multiple} (micro-batches x "
                f"data-parallel devices) or of the {n} processes"
            )
        batch = device_batch(parts, padding_rows(B // n, cfg.length_buckets[0]))
        state = jax.tree.map(lambda x: x.copy() if isinstance(x, jax.Array) else x, parts.state)
        jax.block_until_ready(parts.train_step(state, batch))


def update_on(
    parts: Parts,
    seqs: list[Seq],
    it: int,
    workdir: Path,
    timer: metrics_lib.StepTimer,
    out: dict[str, float],
    max_rows: int,
) -> tuple[dict[str, float], bool]:
    """Trainer sequences (advantages set) -> TrainBatch of at most `max_rows` rows -> old and
    reference logprobs -> update step(s) -> weight sync; metrics added to `out`."""
    cfg = parts.cfg
    with timer("reference"):
        assembled = assemble(parts, seqs, max_rows)
    if assembled is None:  # every group had equal rewards: nothing to learn from this batch
        out["update/empty_batch"] = 1.0
        out.update(timer.split())
        return out, False
    host, batch = assembled
    with timer("reference"):
        jax.block_until_ready(batch)
    with timer("update"):
        for _ in range(cfg.updates_per_batch):
            parts.state, step_metrics = parts.train_step(parts.state, batch)
        step_metrics = metrics_lib.scalars(step_metrics)
    with timer("sync"):
        # Always: the step donated the arrays the in-process engine was holding.
        parts.sync(parts.engine, parts.policy, parts.state.params, it + 1, workdir, cfg.model_dir)
    out.update(step_metrics)
    out.update(batch_metrics(host))
    tokens = out["update/tokens"]
    out["update/tokens_per_s"] = tokens * cfg.updates_per_batch / timer.seconds["update"]
    if cfg.peak_tflops > 0:
        T = host.input_ids.shape[1]
        flops = (
            tokens
            * cfg.updates_per_batch
            * metrics_lib.train_flops_per_token(parts.policy.config, T)
        )
        peak = cfg.peak_tflops * 1e12 * parts.policy.mesh.size
        out["update/mfu"] = flops / timer.seconds["update"] / peak
    out.update(timer.split())
    return out, True
