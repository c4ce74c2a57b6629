"""Process-local rows agree across processes on replayed MoE routing: a process with no
sequences, or with sequences that carry no routing, builds a block of the same arrays (shapes,
dtypes, tree) as one whose rows replay routing, with -1 (the trainer's router) in it."""

from __future__ import annotations

import jax
import numpy as np

from pivotrl_jax.train.batching import Sequence, make_batch
from pivotrl_jax.train.placement import padding_rows, with_routing


def _seq(rng, routed: bool) -> Sequence:
    prompt, response = (1, 2, 3), (4, 5)
    fed = len(prompt) + len(response) - 1
    return Sequence(
        prompt,
        response,
        (-1.0, -2.0),
        0.5,
        routed_experts=rng.integers(0, 8, (fed, 3, 2)).astype(np.int32) if routed else None,
    )


def _layout(batch):
    return jax.tree.structure(batch), [(x.shape, x.dtype) for x in jax.tree.leaves(batch)]


def test_rows_without_routing_match_rows_with_it():
    rng = np.random.default_rng(0)
    routed = make_batch([_seq(rng, True), _seq(rng, True)], length_buckets=(8,))
    plain = make_batch([_seq(rng, False), _seq(rng, False)], length_buckets=(8,))
    assert routed.routed_experts.shape == (2, 8, 3, 2) and plain.routed_experts is None

    padding = padding_rows(*routed.shape)
    assert padding.routed_experts is None and not padding.segment_ids.any()
    for block in (with_routing(padding, [3, 2]), with_routing(plain, [3, 2])):
        assert _layout(block) == _layout(routed)
        assert (block.routed_experts == -1).all()
    # Rows that carry routing keep it; no process with routing leaves every block without it.
    assert with_routing(routed, [3, 2]) is routed
    assert with_routing(plain, None) is plain
