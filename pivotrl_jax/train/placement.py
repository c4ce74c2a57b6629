"""Process-local trainer rows -> one global TrainBatch on the mesh.

Each of n processes lays out the sequences of its own pivots (`batching.make_batch`) and holds
only those rows of the global [B, T] batch:

    process 0: rows [0, B/n)    process 1: rows [B/n, 2B/n)    ...    process n-1: the last B/n

`local_batch` first agrees on the block shape, so every process builds the same [B/n, T]: T is
the length bucket of the longest sequence of any process, B/n the largest row count any process
needs (rounded as `make_batch` rounds rows); a process whose groups were all dropped holds
padding rows. `place_rows` assembles the global arrays with
`jax.make_array_from_process_local_data`, and `batch_metrics` sums what the processes' rows hold.
With one process these are `make_batch`, a `device_put` of its rows over the batch mesh axes,
and `metrics.batch_metrics`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from pivotrl_jax import distributed
from pivotrl_jax.train import metrics as metrics_lib
from pivotrl_jax.train.batching import Sequence as Seq
from pivotrl_jax.train.batching import TrainBatch, make_batch
from pivotrl_jax.train.state import Policy
from pivotrl_jax.train.step import batch_sharding


def padding_rows(B: int, T: int) -> TrainBatch:
    """A [B, T] TrainBatch of padding only (segment id 0 everywhere: no loss, no token)."""
    fields = {f.name: np.zeros((B, T), np.int32) for f in dataclasses.fields(TrainBatch)}
    floats = ("loss_mask", "advantages", "behaviour_logprobs", "old_logprobs", "ref_logprobs")
    fields.update({name: np.zeros((B, T), np.float32) for name in floats})
    return TrainBatch(**fields)


def local_batch(
    seqs: Sequence[Seq],
    *,
    length_buckets: Sequence[int],
    row_multiple: int,
    max_rows: int,
    **layout: Any,
) -> TrainBatch | None:
    """This process's [B/n, T] block of the global batch; None when no process has a sequence.

    `row_multiple` and `max_rows` describe the global batch, the rest is `make_batch`'s layout
    (`pack`, `share_prefix`); the global row multiple must split evenly over the processes."""
    n = distributed.process_count()
    if row_multiple % n:
        raise ValueError(
            f"the batch row multiple {row_multiple} (micro-batches x data-parallel devices) does "
            f"not split over {n} processes; shard the batch over every process"
        )
    multiple, cap = row_multiple // n, math.ceil(max_rows / n)
    own = None
    if seqs:
        own = make_batch(
            seqs, length_buckets=length_buckets, row_multiple=multiple, max_rows=cap, **layout
        )
    shapes = distributed.allgather_json(list(own.shape) if own is not None else [0, 0])
    B, T = max(s[0] for s in shapes), max(s[1] for s in shapes)
    if B == 0:
        return None
    if own is None:
        return padding_rows(B, T)
    if own.shape == (B, T):
        return own
    # The agreed shape: buckets from T up (the same longest bucket, so the same layout units).
    longer = tuple(b for b in length_buckets if b >= T)
    return make_batch(seqs, length_buckets=longer, row_multiple=B, max_rows=B, **layout)


def place_rows(host: TrainBatch, policy: Policy) -> TrainBatch:
    """Every process's [B/n, T] host block -> global [B, T] arrays, rows over the batch axes."""
    n = distributed.process_count()

    def one(x: np.ndarray) -> jax.Array:
        shape = (x.shape[0] * n, *x.shape[1:])
        return jax.make_array_from_process_local_data(batch_sharding(policy, shape), x, shape)

    return jax.tree.map(one, host)


def batch_metrics(host: TrainBatch) -> dict[str, float]:
    """`metrics.batch_metrics` of the global batch, from every process's rows."""
    local = metrics_lib.batch_metrics(host.segment_ids, host.parent_ids)
    every = distributed.allgather_json(local)
    tokens = sum(m["update/tokens"] for m in every)
    rows = sum(m["update/rows"] for m in every)
    return {
        "update/tokens": tokens,
        "update/rows": rows,
        "update/pad_fraction": 1.0 - tokens / (rows * host.shape[1]),
        "update/prompt_tokens_shared": sum(m["update/prompt_tokens_shared"] for m in every),
    }
