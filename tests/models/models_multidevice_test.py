"""The same forward, gradient and cached decode on a (2, 4) mesh of 8 simulated CPU devices as on
one device. Each case runs in a subprocess, since the device count is fixed when jax starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from pivotrl_jax.models import (DEFAULT_RULES, KVCache, activation_sharding, cache_shardings,
                                    forward, forward_with_cache, load_hf, make_mesh)
    from pivotrl_jax.models.testing import random_tokens

    folder, axes, dispatch = sys.argv[1], tuple(sys.argv[2].split(",")), sys.argv[3]
    assert jax.device_count() == 8

    def run(model, ids, place):
        graphdef, params = nnx.split(model)
        pos = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
        mask = jnp.ones_like(ids)
        ids, pos, mask = place(ids), place(pos), place(mask)
        f = jax.jit(lambda p: forward(graphdef, p, ids, pos, mask))
        logits = f(params)
        grads = jax.jit(jax.grad(lambda p: jnp.mean(f(p) ** 2)))(params)
        step = jax.jit(forward_with_cache, static_argnums=0)
        cache = KVCache.init(model.config, ids.shape[0], ids.shape[1])
        if place is not None and hasattr(place, "mesh"):
            cache = jax.device_put(cache, cache_shardings(cache, place.mesh))
        pre, cache = step(graphdef, params, ids[:, :-1], pos[:, :-1], mask[:, :-1], cache)
        last, cache = step(graphdef, params, ids[:, -1:], pos[:, -1:], mask[:, -1:], cache)
        return (np.asarray(logits), jax.tree.map(np.asarray, grads),
                np.concatenate([np.asarray(pre), np.asarray(last)], axis=1))

    single, config = load_hf(folder, moe_dispatch=dispatch)
    ids = jnp.asarray(random_tokens(config, batch=8, length=10, seed=0))
    want = run(single, ids, lambda x: x)

    mesh = make_mesh((2, 4), axes)
    with jax.set_mesh(mesh):
        model, _ = load_hf(folder, mesh=mesh, moe_dispatch=dispatch)
        specs = {".".join(map(str, p)): str(v.get_value().sharding.spec)
                 for p, v in nnx.to_flat_state(nnx.state(model))}
        class Place:
            def __init__(self, mesh):
                self.mesh = mesh
            def __call__(self, x):
                return jax.device_put(x, activation_sharding(self.mesh, DEFAULT_RULES, x.shape))
        got = run(model, ids, Place(mesh))

    grad_diff = max(float(np.abs(a - b).max()) for a, b in
                    zip(jax.tree.leaves(got[1]), jax.tree.leaves(want[1])))
    print(json.dumps({
        "logits": float(np.abs(got[0] - want[0]).max()),
        "grads": grad_diff,
        "cached": float(np.abs(got[2] - want[0]).max()),
        "specs": specs,
    }))
""")


def _run(folder, axes, dispatch="dense"):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(folder), axes, dispatch],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.multidevice
def test_dense_on_fsdp_by_tensor_mesh(reference):
    folder, _ = reference("dense_tied_gqa4")
    out = _run(folder, "fsdp,tensor")
    assert out["logits"] <= 1e-5 and out["cached"] <= 1e-5 and out["grads"] <= 1e-5, out
    specs = out["specs"]
    assert specs["embedding"] == "P('tensor', 'fsdp')"
    # Both layers in one stack: the leading layer axis is never sharded.
    assert specs["stacks.0.attn.q_proj"] == "P(None, 'fsdp', 'tensor', None)"
    # 2 KV heads do not split 4 ways: they stay whole, the rest of the array is still sharded.
    assert specs["stacks.0.attn.k_proj"] == "P(None, 'fsdp', None, None)"


@pytest.mark.multidevice
@pytest.mark.parametrize("dispatch", ["dense", "ragged"])
def test_moe_on_data_by_expert_mesh(reference, dispatch):
    folder, _ = reference("moe_topk_norm")
    out = _run(folder, "data,expert", dispatch)
    assert out["logits"] <= 1e-5 and out["cached"] <= 1e-5 and out["grads"] <= 1e-5, out
    assert out["specs"]["stacks.0.mlp.gate_proj"] == "P(None, 'expert', None, None)"
