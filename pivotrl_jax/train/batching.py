"""Rollouts -> fixed-shape trainer batches: one sequence per row, packed rows, or prefix-shared
GRPO groups; padding masked out.

A `Sequence` is one sampled action in its state: prompt ids, response ids, the rollout engine's
per-token logprobs of the response, and the group advantage. A `TrainBatch` lays sequences out
on a [B, T] grid, one per row (padding) or several per row (packing):

    packed row:  p p p r r r | p p r r r r | p p r . . .    (p prompt, r response, . pad)
    segment_ids: 1 1 1 1 1 1   2 2 2 2 2 2   3 3 3 0 0 0
    positions:   0 1 2 3 4 5   0 1 2 3 4 5   0 1 2 0 0 0
    loss_mask:   0 0 1 1 1 0   0 1 1 1 1 0   0 1 0 0 0 0    (1 at t when token t+1 is a response)

With `share_prefix`, the G sequences of one prompt (a GRPO group) share one copy of it: the
prompt minus its last token is a segment of its own, and each response follows as a segment
that starts with the prompt's last token, names the prompt segment as its parent and continues
its positions. Each response then sees exactly what it would see in a row of its own (the
prompt and its own earlier tokens; attention.py), so its logprobs and gradients are those of G
separate rows, while the prompt is computed once:

    prompt a b c d, responses x y / z:
    tokens:      a b c | d x y | d z       (the shared prompt, then each response)
    segment_ids: 1 1 1   2 2 2   3 3
    parent_ids:  0 0 0   1 1 1   1 1
    positions:   0 1 2   3 4 5   3 4
    loss_mask:   0 0 0   1 1 0   1 0       (d predicts x, x predicts y; d predicts z)

The model lets a token see only earlier tokens of its own segment and of its parent (segment id 0
sees nothing and is seen by nothing), so a row's logprobs do not depend on its padding or its
neighbours; targets, masks and logprobs are aligned to the *predicting* position t (target =
token t + 1 of the same segment). T is the smallest of a few fixed buckets that fits, so the
jitted step compiles a handful of times, not once per batch. Rows are as many as the layout
needs, rounded up to a multiple (micro-batches x data-parallel devices); `pad_rows` instead
rounds up to a few buckets, multiple x {1, 2, 4, ...} or, with `rows_per_octave=2`, multiple x
{1, 2, 3, 4, 6, 8, ...} (fewer shapes to compile when batches vary: SFT, and GRPO after groups
with equal rewards are dropped). The extra rows are padding (segment id 0, no loss).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence as Seq
from typing import Any

import jax
import numpy as np
from flax import struct

from pivotrl_jax.rollout.buckets import bucket

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
    positions: Array  # [B, T] int32, 0.. within each segment (a response continues its parent)
    segment_ids: Array  # [B, T] int32, 0 = padding, 1.. = sequence within the row
    parent_ids: Array  # [B, T] int32, the segment a token's segment continues; 0 = none
    targets: Array  # [B, T] int32, the token predicted at t (0 where none)
    loss_mask: Array  # [B, T] float32, 1 where the target is a response token
    advantages: Array  # [B, T] float32, the sequence's advantage on its loss positions
    behaviour_logprobs: Array  # [B, T] float32, rollout engine's logprob of the target
    old_logprobs: Array  # [B, T] float32, log pi_old(target); the loop fills it
    ref_logprobs: Array  # [B, T] float32, log pi_0(target); the loop fills it (or zeros)
    # [B, T, L, R] int16 MoE experts to replay at each position, -1 where the trainer's router
    # decides; None when no sequence carries recorded routing. (int16: half the bytes of the
    # batch's largest array; expert ids stay far below 2^15.)
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


def bucket_rows(rows: int, multiple: int, max_rows: int, per_octave: int = 1) -> int:
    """Rows rounded up to multiple · b, capped at max_rows rounded up to the multiple, where b
    is the `rollout.buckets.bucket` of ceil(rows / multiple) with `per_octave` sizes per octave
    (1: 2^k; 2: 2^k and 3 · 2^(k-1), at most 1/3 filler rows).

    `multiple` is micro-batches × data-parallel devices, so every micro-batch splits evenly
    across devices; the buckets bound the number of distinct shapes (compilations) to about
    per_octave · log2(max_rows / multiple) + 1.
    """
    cap = math.ceil(max(max_rows, 1) / multiple) * multiple
    units = math.ceil(max(rows, 1) / multiple)
    return min(multiple * bucket(units, per_octave=per_octave), cap)


@dataclasses.dataclass(frozen=True)
class Unit:
    """What one row slot holds: sequences `members` of one prompt, one segment each, after a
    shared copy of the prompt (`shared`), or a single sequence with its prompt (not shared)."""

    members: tuple[int, ...]  # indices into the sequences
    shared: bool

    def length(self, seqs: Seq[Sequence]) -> int:
        if not self.shared:
            (i,) = self.members
            return len(seqs[i].prompt_ids) + len(seqs[i].response_ids)
        prefix = len(seqs[self.members[0]].prompt_ids) - 1
        return prefix + sum(1 + len(seqs[i].response_ids) for i in self.members)


def _units(seqs: Seq[Sequence], share_prefix: bool, max_len: int) -> list[Unit]:
    """One unit per sequence, or per group of sequences with equal prompts (in first-seen order),
    a group split into consecutive parts where one row of `max_len` cannot hold it all."""
    if not share_prefix:
        return [Unit((i,), False) for i in range(len(seqs))]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(seqs):
        groups.setdefault(s.prompt_ids, []).append(i)
    units = []
    for prompt, members in groups.items():
        part: list[int] = []
        used = len(prompt) - 1
        for i in members:
            need = 1 + len(seqs[i].response_ids)
            if part and used + need > max_len:
                units.append(Unit(tuple(part), True))
                part, used = [], len(prompt) - 1
            part.append(i)
            used += need
        units.append(Unit(tuple(part), True))
    return units


def _layout(units: Seq[Unit], lengths: Seq[int], T: int, pack: bool) -> list[list[int]]:
    """Row assignment of units: one per row, or first-fit-decreasing packing into rows of T."""
    if not pack:
        return [[u] for u in range(len(units))]
    rows: list[list[int]] = []
    free: list[int] = []
    # Stable sort by decreasing length: ties keep input order (deterministic layout).
    for u in sorted(range(len(units)), key=lambda u: -lengths[u]):
        for r, room in enumerate(free):
            if lengths[u] <= room:
                rows[r].append(u)
                free[r] -= lengths[u]
                break
        else:
            rows.append([u])
            free.append(T - lengths[u])
    return rows


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where every sequence went: its row and the column predicting its first response token."""

    T: int
    rows: int  # rows holding sequences (the batch may have more, all padding)
    row: tuple[int, ...]  # [n sequences]
    response_start: tuple[int, ...]  # [n sequences]


def _check(seqs: Seq[Sequence]) -> None:
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
        fed = len(s.prompt_ids) + len(s.response_ids) - 1
        if s.routed_experts is not None and len(s.routed_experts) != fed:
            raise ValueError(f"routed experts for {len(s.routed_experts)} tokens; {fed} are fed")
    shapes = {s.routed_experts.shape[1:] for s in seqs if s.routed_experts is not None}
    if len(shapes) > 1:
        raise ValueError(f"sequences carry routed experts of different shapes {sorted(shapes)}")


def make_batch(seqs: Seq[Sequence], **layout: Any) -> TrainBatch:
    """`make_batch_and_layout(seqs, **layout)`'s batch alone."""
    return make_batch_and_layout(seqs, **layout)[0]


def make_batch_and_layout(
    seqs: Seq[Sequence],
    *,
    length_buckets: Seq[int],
    row_multiple: int = 1,
    max_rows: int | None = None,
    pack: bool = False,
    share_prefix: bool = False,
    pad_rows: bool = False,
    rows_per_octave: int = 1,
) -> tuple[TrainBatch, Layout]:
    """Lays `seqs` out as a numpy-backed TrainBatch (put it on devices with `jax.device_put`),
    and says where each sequence landed (for `response_values`).

    `share_prefix` puts sequences with equal prompts after one copy of it (then `pack` packs
    whole groups into rows); rows are the layout's, rounded up to `row_multiple` (or to
    `row_multiple` · b with `pad_rows`, b one of `rows_per_octave` buckets per octave:
    `bucket_rows`), at most `max_rows`; the rows beyond the layout's are all padding.
    old_logprobs starts as a copy of behaviour_logprobs (the engine's), ref_logprobs as zeros.
    """
    _check(seqs)
    units = _units(seqs, share_prefix, max(length_buckets))
    lengths = [u.length(seqs) for u in units]
    T = bucket_length(max(lengths), length_buckets)
    layout = _layout(units, lengths, T, pack)
    needed = len(layout)
    if max_rows is not None and needed > max_rows:
        raise ValueError(f"{needed} rows do not fit max_rows={max_rows}")
    if pad_rows:
        B = bucket_rows(needed, row_multiple, max_rows or needed, rows_per_octave)
    else:
        B = math.ceil(needed / row_multiple) * row_multiple

    ids = np.zeros((B, T), np.int32)
    pos = np.zeros((B, T), np.int32)
    seg = np.zeros((B, T), np.int32)
    par = np.zeros((B, T), np.int32)
    tgt = np.zeros((B, T), np.int32)
    mask = np.zeros((B, T), np.float32)
    adv = np.zeros((B, T), np.float32)
    blp = np.zeros((B, T), np.float32)
    row_of = [0] * len(seqs)
    start_of = [0] * len(seqs)
    # Replayed MoE routing, one row per fed token; -1 (the trainer's router) where none.
    shapes = {s.routed_experts.shape[1:] for s in seqs if s.routed_experts is not None}
    routed = np.full((B, T, *shapes.pop()), -1, np.int16) if shapes else None

    def put(
        r: int,
        start: int,
        tokens: np.ndarray,
        first_pos: int,
        segment: int,
        parent: int,
        routing: np.ndarray | None = None,  # [<= n, L, R] of these tokens, from the first
    ):
        n = len(tokens)
        sl = slice(start, start + n)
        if routing is not None:
            routed[r, start : start + len(routing)] = routing
        ids[r, sl] = tokens
        pos[r, sl] = first_pos + np.arange(n)
        seg[r, sl] = segment
        par[r, sl] = parent
        tgt[r, start : start + n - 1] = tokens[1:]

    def put_response(r: int, at: int, i: int) -> None:
        # Response token j is predicted at column at + j.
        s = seqs[i]
        resp = slice(at, at + len(s.response_ids))
        mask[r, resp] = 1.0 if s.response_mask is None else np.asarray(s.response_mask)
        adv[r, resp] = s.advantage
        blp[r, resp] = np.asarray(s.response_logprobs, np.float32)
        row_of[i], start_of[i] = r, at

    for r, members in enumerate(layout):
        start, segment = 0, 0
        for u in members:
            unit = units[u]
            prompt = seqs[unit.members[0]].prompt_ids
            if not unit.shared:
                (i,) = unit.members
                tokens = np.asarray(prompt + seqs[i].response_ids, np.int32)
                segment += 1
                put(r, start, tokens, 0, segment, 0, seqs[i].routed_experts)
                put_response(r, start + len(prompt) - 1, i)
                start += len(tokens)
                continue
            parent = 0
            if len(prompt) > 1:
                segment += 1
                parent = segment
                first = seqs[unit.members[0]].routed_experts
                prefix = None if first is None else first[: len(prompt) - 1]
                put(r, start, np.asarray(prompt[:-1], np.int32), 0, segment, 0, prefix)
                start += len(prompt) - 1
            for i in unit.members:
                tokens = np.asarray(prompt[-1:] + seqs[i].response_ids, np.int32)
                segment += 1
                own = seqs[i].routed_experts
                own = None if own is None else own[len(prompt) - 1 :]
                put(r, start, tokens, len(prompt) - 1, segment, parent, own)
                put_response(r, start, i)
                start += len(tokens)
    batch = TrainBatch(
        ids, pos, seg, par, tgt, mask, adv, blp, blp.copy(), np.zeros_like(blp), routed
    )
    return batch, Layout(T, needed, tuple(row_of), tuple(start_of))


def response_values(values: np.ndarray, seqs: Seq[Sequence], layout: Layout) -> list[np.ndarray]:
    """Inverse of the layout for one [B, T] array: each sequence's [Lr] response values."""
    return [
        np.asarray(values[r, a : a + len(s.response_ids)])
        for s, r, a in zip(seqs, layout.row, layout.response_start, strict=True)
    ]
