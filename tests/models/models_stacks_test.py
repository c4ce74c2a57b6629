"""Stacked layers: which layer is which row of which stack, conversions to and from the per-layer
layout, and a native folder written with one entry per layer loading into the stacks."""

from __future__ import annotations

import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from pivotrl_jax.models import load_hf, load_native
from pivotrl_jax.models.stacks import layer_rows, layer_stacks, stack_layers, unstack_layers


@pytest.mark.parametrize(
    "kinds, stacks",
    [
        ([0, 0, 0, 0], [(0, 1, 2, 3)]),
        ([0, 1, 1, 1], [(0,), (1, 2, 3)]),
        ([0, 1, 0, 1, 0, 1], [(0, 2, 4), (1, 3, 5)]),
        ([0, 1, 0, 0], [(0,), (1,), (2, 3)]),
        ([1], [(0,)]),
    ],
)
def test_stacks_hold_each_layer_once(kinds, stacks):
    assert layer_stacks(kinds) == stacks
    rows = layer_rows(kinds)
    assert [stacks[s][r] for s, r in rows] == list(range(len(kinds)))


def test_stack_and_unstack_by_hand():
    # Layers 0..3 of kinds (a, b, a, b): stacks (0, 2) and (1, 3).
    tree = {
        "embedding": np.zeros(2),
        "layers": {i: {"w": np.full((2,), i), "n": {"s": np.asarray(10 * i)}} for i in range(4)},
    }
    kinds = ["a", "b", "a", "b"]
    stacked = stack_layers(tree, kinds, join=np.stack)
    assert sorted(stacked) == ["embedding", "stacks"]
    np.testing.assert_array_equal(stacked["stacks"][0]["w"], [[0, 0], [2, 2]])
    np.testing.assert_array_equal(stacked["stacks"][1]["n"]["s"], [10, 30])
    back = unstack_layers(stacked, kinds)
    assert sorted(back) == ["embedding", "layers"]
    for i in range(4):
        np.testing.assert_array_equal(back["layers"][i]["w"], [i, i])
        assert int(back["layers"][i]["n"]["s"]) == 10 * i


def test_native_folder_with_per_layer_params_loads(reference, tmp_path):
    """A params/ tree keyed layers.<i> (the layout before stacking) loads into the stacks."""
    folder, _ = reference("moe_step2_mlp_only")
    model, config = load_hf(folder)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    # Kinds (dense, moe, dense, dense): stacks (0,), (1,), (2, 3).
    where = {0: (0, 0), 1: (1, 0), 2: (2, 0), 3: (2, 1)}
    per_layer = {k: v for k, v in params.items() if k != "stacks"}
    per_layer["layers"] = {
        i: _rows(params["stacks"][s], r) for i, (s, r) in where.items()
    }  # fmt: skip
    native = tmp_path / "native"
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(native / "params", per_layer)
    checkpointer.wait_until_finished()
    (native / "config.json").write_text(json.dumps(config.to_hf_config()))
    restored, _ = load_native(native)
    got = nnx.to_flat_state(nnx.state(restored, nnx.Param))
    want = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    assert {p for p, _ in got} == set(want)
    for path, var in got:
        np.testing.assert_array_equal(np.asarray(var.get_value()), want[path].get_value())


def _rows(tree, r):
    if isinstance(tree, dict):
        return {k: _rows(v, r) for k, v in tree.items()}
    return np.asarray(tree)[r]


@pytest.mark.parametrize("name", ["dense_tied_gqa4", "moe_step2_mlp_only"])
def test_prefill_slicing_each_step_equals_slicing_once(name):
    """The decode loops' two ways to get a layer's parameters (`decode.loop_layers`: sliced once
    before the loop on CPU, sliced in each step on accelerators) give the same cache and
    logits."""
    import jax.numpy as jnp

    from pivotrl_jax.models.testing import TINY_CONFIGS, random_model
    from pivotrl_jax.models.transformer import layer_states
    from pivotrl_jax.rollout.decode import prefill

    config = TINY_CONFIGS[name]
    graphdef, params = nnx.split(random_model(config, seed=3))
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(1, config.vocab_size, size=(2, 8)), jnp.int32)
    mask = jnp.asarray([[0, 0, 1, 1, 1, 1, 1, 1], [1] * 8], jnp.int32)
    once = prefill(
        graphdef, params, ids, mask, config=config, chunk=4, layers=layer_states(graphdef, params)
    )
    each = prefill(graphdef, params, ids, mask, config=config, chunk=4, layers=None)
    for a, b in zip(jax.tree.leaves(once), jax.tree.leaves(each), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=0)
