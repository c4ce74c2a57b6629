"""Decoder layers stored as stacks: every parameter of a run of same-kind layers is one array
with a leading [n] axis, row r holding the run's r-th layer.

    runs = layer_groups(kinds)         (start, period, repeats): `repeats` copies of a period
    stacks = layer_stacks(kinds)       a run gives `period` stacks; stack j of a run holds the
                                       layers start + r * period + j, r < repeats
    params["stacks"][s][...]           [n, ...] for the n layers of stack s (n = 1: a layer
                                       that repeats nothing)

The scan over a run's repeats slices its stacks' rows inside one compiled body, so neither the
forward program nor the optimizer (one leaf per stack, not per layer) grows with depth. The
layout depends on the layer kinds only, not on `scan_layers`. `stack_layers` / `unstack_layers`
convert a tree with per-layer entries (`{"layers": {i: ...}}`, the layout of checkpoints written
before layers were stacked) to and from this one.

>>> layer_stacks([False, True, True, True])
[(0,), (1, 2, 3)]
>>> layer_stacks(["dense", "moe"] * 3)
[(0, 2, 4), (1, 3, 5)]
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import jax.numpy as jnp

from pivotrl_jax.models.config import ModelConfig

STACKS = "stacks"  # the model attribute (and parameter tree key) of the stacks
LAYERS = "layers"  # the per-layer key of the unstacked layout


def layer_kinds(config: ModelConfig) -> list[bool]:
    """Per layer: whether it is a MoE layer (layers of one kind have the same parameters)."""
    return [config.is_moe_layer(i) for i in range(config.num_hidden_layers)]


def layer_groups(kinds: Sequence[Hashable], max_period: int = 4) -> list[tuple[int, int, int]]:
    """Cover layers 0..L-1 with runs (start, period, repeats) of a repeated pattern of kinds.

    Layers [start, start + period * repeats) are `repeats` copies of kinds[start:start+period],
    so one scan over the repeats runs them with one compiled body; a layer that repeats nothing
    gets a run of its own (repeats 1). Each run is the longest one found from its start.

    >>> layer_groups(["dense", "moe", "moe", "moe"])
    [(0, 1, 1), (1, 1, 3)]
    >>> layer_groups(["dense", "moe"] * 3)
    [(0, 2, 3)]
    """
    kinds = tuple(kinds)
    out, i = [], 0
    while i < len(kinds):
        best = (1, 1)
        for period in range(1, min(max_period, len(kinds) - i) + 1):
            pattern = kinds[i : i + period]
            repeats = 1
            while kinds[i + repeats * period : i + (repeats + 1) * period] == pattern:
                repeats += 1
            if repeats > 1 and period * repeats > best[0] * best[1]:
                best = (period, repeats)
        out.append((i, *best))
        i += best[0] * best[1]
    return out


def layer_stacks(kinds: Sequence[Hashable]) -> list[tuple[int, ...]]:
    """The layers of each stack, in stack order (runs in layer order, then period position)."""
    return [
        tuple(start + r * period + j for r in range(repeats))
        for start, period, repeats in layer_groups(kinds)
        for j in range(period)
    ]


def layer_rows(kinds: Sequence[Hashable]) -> list[tuple[int, int]]:
    """Per layer: (its stack, its row in that stack)."""
    where = {i: (s, r) for s, ls in enumerate(layer_stacks(kinds)) for r, i in enumerate(ls)}
    return [where[i] for i in range(len(kinds))]


def _map_pair(fn: Callable[..., Any], *trees: Any) -> Any:
    """`fn` over the leaves of nested dicts of equal structure (anything not a dict is a leaf)."""
    if isinstance(trees[0], dict):
        return {k: _map_pair(fn, *(t[k] for t in trees)) for k in trees[0]}
    return fn(*trees)


def stack_layers(
    tree: dict[Any, Any],
    kinds: Sequence[Hashable],
    join: Callable[[list[Any]], Any] = jnp.stack,
) -> dict[Any, Any]:
    """`{"layers": {i: layer tree}, ...}` -> `{"stacks": {s: stacked tree}, ...}`; `join`
    makes one leaf of the per-layer leaves of a stack (default: `jnp.stack`)."""
    per_layer = tree[LAYERS]
    if len(per_layer) != len(kinds):
        raise ValueError(f"{len(per_layer)} layers in the tree, {len(kinds)} in the config")
    layer = lambda i: per_layer[i] if i in per_layer else per_layer[str(i)]
    stacks = {
        s: _map_pair(lambda *xs: join(list(xs)), *(layer(i) for i in ls))
        for s, ls in enumerate(layer_stacks(kinds))
    }
    out = {k: v for k, v in tree.items() if k != LAYERS}
    out[STACKS] = stacks
    return out


def unstack_layers(
    tree: dict[Any, Any],
    kinds: Sequence[Hashable],
    take: Callable[[Any, int], Any] = lambda x, r: x[r],
) -> dict[Any, Any]:
    """Inverse of `stack_layers`: `take(leaf, r)` is row r of a stacked leaf."""
    stacks = tree[STACKS]
    stack = lambda s: stacks[s] if s in stacks else stacks[str(s)]
    layers = {
        i: _map_pair(lambda x, r=r: take(x, r), stack(s))
        for i, (s, r) in enumerate(layer_rows(kinds))
    }
    out = {k: v for k, v in tree.items() if k != STACKS}
    out[LAYERS] = layers
    return out
