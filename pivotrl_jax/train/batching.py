"""Rollouts -> fixed-shape trainer batches: bucketed padding or packing, padding masked out.

A `Sequence` is one sampled action in its state: prompt ids, response ids, the rollout engine's
per-token logprobs of the response, and the group advantage. A `TrainBatch` lays sequences out
on a [B, T] grid, one per row (padding) or several per row (packing):

    packed row:  p p p r r r | p p r r r r | p p r . . .    (p prompt, r response, . pad)
    segment_ids: 1 1 1 1 1 1   2 2 2 2 2 2   3 3 3 0 0 0
    positions:   0 1 2 3 4 5   0 1 2 3 4 5   0 1 2 0 0 0
    loss_mask:   0 0 1 1 1 0   0 1 1 1 1 0   0 1 0 0 0 0    (1 at t when token t+1 is a response)

The model lets a token see only earlier tokens of its own segment (segment id 0 sees nothing and
is seen by nothing), so a row's logprobs do not depend on its padding or its neighbours; targets,
masks and logprobs are aligned to the *predicting* position t (target = token t + 1 of the same
segment). T is the smallest of a few fixed buckets that fits, and the row count is rounded up to
a few fixed sizes, so the jitted step compiles a handful of times, not once per batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence as Seq

import jax
import numpy as np
from flax import struct

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Sequence:
    """One sampled action a ~ pi(. | s) with what the loss needs (host-side)."""

    prompt_ids: tuple[int, ...]  # [Lp] the pivot state s, chat-templated
    response_ids: tuple[int, ...]  # [Lr] the sampled action a
    response_logprobs: tuple[float, ...]  # [Lr] rollout engine's log mu(a_i | s, a_<i)
    advantage: float  # the group advantage of this sample
    # [Lr] per-token loss weights (1 = a target); None = every response token. SFT on a whole
    # trajectory sets 0 on the tool and user tokens between assistant turns.
    response_mask: tuple[float, ...] | None = None
    # [Lp + Lr - 1, L, R] int: the MoE experts the rollout engine routed each fed token to
    # (Completion.routed_experts); replayed by the trainer. None: the trainer's router decides.
    routed_experts: np.ndarray | None = dataclasses.field(default=None, compare=False)


@struct.dataclass
class TrainBatch:
    """A [B, T] trainer batch; every array field is aligned to the predicting position t."""

    input_ids: Array  # [B, T] int32
    positions: Array  # [B, T] int32, 0.. within each segment
    segment_ids: Array  # [B, T] int32, 0 = padding, 1.. = sequence within the row
    targets: Array  # [B, T] int32, the token predicted at t (0 where none)
    loss_mask: Array  # [B, T] float32, 1 where the target is a response token
    advantages: Array  # [B, T] float32, the sequence's advantage on its loss positions
    behaviour_logprobs: Array  # [B, T] float32, rollout engine's logprob of the target
    old_logprobs: Array  # [B, T] float32, log pi_old(target); the loop fills it
    ref_logprobs: Array  # [B, T] float32, log pi_0(target); the loop fills it (or zeros)
    # [B, T, L, R] int32 MoE experts to replay at each position, -1 where the trainer's router
    # decides; None when no sequence carries recorded routing.
    routed_experts: Array | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.input_ids.shape


def bucket_length(length: int, buckets: Seq[int]) -> int:
    """The smallest bucket >= length; an error when none fits."""
    for b in sorted(buckets):
        if length <= b:
            return b
    raise ValueError(
        f"a sequence of {length} tokens exceeds the largest length bucket "
        f"{max(buckets)}; raise the buckets or lower the prompt/response limits"
    )


def bucket_rows(rows: int, multiple: int, max_rows: int) -> int:
    """Rows rounded up to multiple · 2^k, capped at max_rows rounded up to the multiple.

    `multiple` is micro-batches × data-parallel devices, so every micro-batch splits evenly
    across devices; powers of two bound the number of distinct shapes (compilations).
    """
    cap = math.ceil(max(max_rows, 1) / multiple) * multiple
    units = math.ceil(max(rows, 1) / multiple)
    return min(multiple * (1 << (units - 1).bit_length()), cap)


def _layout(seqs: Seq[Sequence], T: int, pack: bool) -> list[list[int]]:
    """Row assignment: one sequence per row, or first-fit-decreasing packing into rows of T."""
    if not pack:
        return [[i] for i in range(len(seqs))]
    lengths = [len(s.prompt_ids) + len(s.response_ids) for s in seqs]
    rows: list[list[int]] = []
    free: list[int] = []
    # Stable sort by decreasing length: ties keep input order (deterministic layout).
    for i in sorted(range(len(seqs)), key=lambda i: -lengths[i]):
        for r, room in enumerate(free):
            if lengths[i] <= room:
                rows[r].append(i)
                free[r] -= lengths[i]
                break
        else:
            rows.append([i])
            free.append(T - lengths[i])
    return rows


def make_batch(
    seqs: Seq[Sequence],
    *,
    length_buckets: Seq[int],
    row_multiple: int = 1,
    max_rows: int | None = None,
    pack: bool = False,
) -> TrainBatch:
    """Lays `seqs` out as a numpy-backed TrainBatch (put it on devices with `jax.device_put`).

    old_logprobs starts as a copy of behaviour_logprobs (the engine's), ref_logprobs as zeros.
    """
    if not seqs:
        raise ValueError("make_batch needs at least one sequence")
    for s in seqs:
        if not s.prompt_ids or not s.response_ids:
            raise ValueError("every sequence needs a non-empty prompt and response")
        if len(s.response_logprobs) != len(s.response_ids):
            raise ValueError(
                f"response of {len(s.response_ids)} tokens has {len(s.response_logprobs)} logprobs"
            )
        if s.response_mask is not None and len(s.response_mask) != len(s.response_ids):
            raise ValueError(
                f"response of {len(s.response_ids)} tokens has {len(s.response_mask)} mask values"
            )
    longest = max(len(s.prompt_ids) + len(s.response_ids) for s in seqs)
    T = bucket_length(longest, length_buckets)
    layout = _layout(seqs, T, pack)
    B = bucket_rows(len(layout), row_multiple, max_rows or len(layout))
    if len(layout) > B:
        raise ValueError(f"{len(layout)} rows do not fit max_rows={max_rows}")

    ids = np.zeros((B, T), np.int32)
    pos = np.zeros((B, T), np.int32)
    seg = np.zeros((B, T), np.int32)
    tgt = np.zeros((B, T), np.int32)
    mask = np.zeros((B, T), np.float32)
    adv = np.zeros((B, T), np.float32)
    blp = np.zeros((B, T), np.float32)
    routed = _routed_layout(seqs, layout, B, T)
    for r, members in enumerate(layout):
        start = 0
        for k, i in enumerate(members):
            s = seqs[i]
            tokens = np.asarray(s.prompt_ids + s.response_ids, np.int32)
            n, lp = len(tokens), len(s.prompt_ids)
            sl = slice(start, start + n)
            ids[r, sl] = tokens
            pos[r, sl] = np.arange(n)
            seg[r, sl] = k + 1
            tgt[r, start : start + n - 1] = tokens[1:]
            # Response token j (j >= lp) is predicted at position j - 1.
            resp = slice(start + lp - 1, start + n - 1)
            mask[r, resp] = 1.0 if s.response_mask is None else np.asarray(s.response_mask)
            adv[r, resp] = s.advantage
            blp[r, resp] = np.asarray(s.response_logprobs, np.float32)
            if s.routed_experts is not None:
                routed[r, start : start + n - 1] = s.routed_experts
            start += n
    return TrainBatch(
        ids, pos, seg, tgt, mask, adv, blp, blp.copy(), np.zeros_like(blp), routed_experts=routed
    )


def _routed_layout(
    seqs: Seq[Sequence], layout: list[list[int]], B: int, T: int
) -> np.ndarray | None:
    """A [B, T, L, R] int32 array of -1 (the router decides) when any sequence carries routing;
    checks every recorded routing has one row per fed token (prompt + response - 1)."""
    shapes = {s.routed_experts.shape[1:] for s in seqs if s.routed_experts is not None}
    if not shapes:
        return None
    if len(shapes) > 1:
        raise ValueError(f"sequences carry routed experts of different shapes {sorted(shapes)}")
    for s in seqs:
        n = len(s.prompt_ids) + len(s.response_ids) - 1
        if s.routed_experts is not None and len(s.routed_experts) != n:
            raise ValueError(
                f"routed experts for {len(s.routed_experts)} tokens; the sequence feeds {n}"
            )
    return np.full((B, T, *shapes.pop()), -1, np.int32)


def response_logprobs(
    batch_logprobs: np.ndarray, seqs: Seq[Sequence], batch: TrainBatch, pack: bool
) -> list[np.ndarray]:
    """Inverse of the layout for one [B, T] array: each sequence's [Lr] response values."""
    T = batch.input_ids.shape[1]
    layout = _layout(seqs, T, pack)
    out: list[np.ndarray] = [np.zeros(0)] * len(seqs)
    for r, members in enumerate(layout):
        start = 0
        for i in members:
            s = seqs[i]
            n, lp = len(s.prompt_ids) + len(s.response_ids), len(s.prompt_ids)
            out[i] = np.asarray(batch_logprobs[r, start + lp - 1 : start + n - 1])
            start += n
    return out
