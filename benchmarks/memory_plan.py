"""Ahead-of-time memory plan of the whole PivotRL train step on a simulated device mesh.

    python benchmarks/memory_plan.py --config configs/qwen3_30b_a3b_tpu_v5p.py
    python benchmarks/memory_plan.py --config configs/qwen3_30b_a3b_tpu_v5p.py:v5p-128
    python benchmarks/memory_plan.py --config configs/qwen3_30b_a3b_h100.py
    python benchmarks/memory_plan.py --config configs/qwen3_30b_a3b_h100.py --layers 2,4
    python benchmarks/memory_plan.py --config configs/train.py:tiny --config.model_dir=runs/m

The config is a train config (configs/train.py's keys); the model's architecture is its
`plan.hf_config` (a config.json dict) or `model_dir/config.json`. With as many simulated CPU
devices as the config's mesh has (`--devices` when its shape holds a -1), the script builds
what `pivotrl train` builds — policy and its sharding rules, optimizer, frozen reference,
`train.make_train_step`, `train.make_logprobs_fn`, a batch of pivots_per_step x group_size rows
of the longest length bucket (routed experts included when the engine returns them) — as
ShapeDtypeStructs with NamedShardings, never materialising a weight, lowers and compiles both
jitted functions, and prints one JSON line of per-device bytes:

    params, opt_state, reference, batch   the arrays' shards on one device (from the shardings)
    train_step_temp, logprobs_temp        XLA's temporaries of each compiled program
    per_device_total                      resident state + the larger of the two temporaries

with `per_device_total_gib`, the device memory `hbm_gib` (config `plan.hbm_gib`) and `fits`.

`--layers A,B` compiles the two programs at depths A < B instead of the model's own and
extrapolates the temporaries linearly to it (the resident state stays exact, at full depth):

    temp(L) = temp(A) + (L - A) (temp(B) - temp(A)) / (B - A)

The layers run as one `lax.scan` with per-layer remat, so a step's temporaries are one layer's
working set (independent of depth) plus buffers that grow by the same amount per layer (the
saved layer inputs, the gradient accumulators). XLA:CPU's compile of a 48-layer MoE step at 32k
context needs more host memory than a small machine has; two shallow compiles do not.
XLA:CPU plans the buffers here; a TPU or GPU compile schedules them differently, and on CPU
the MoE exchange is the padded all-to-all (the ragged one needs no more), so treat the
temporaries as an estimate, the resident state as exact.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="configs/NAME.py[:variant]")
    ap.add_argument("--devices", type=int, default=0, help="simulated devices (default: mesh)")
    ap.add_argument(
        "--layers",
        type=depths,
        default=None,
        help="A,B: compile at depths A < B and extrapolate the temporaries to the model's depth",
    )
    args, rest = ap.parse_known_args(argv)
    overrides = [a[len("--config.") :] for a in rest if a.startswith("--config.")]
    unknown = [a for a in rest if not a.startswith("--config.")]
    if unknown:
        ap.error(f"unrecognised arguments {unknown}")
    return args, overrides


def depths(text: str) -> tuple[int, int]:
    """'A,B' -> (A, B) with 1 <= A < B."""
    try:
        a, b = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers wants two depths A,B, got {text!r}") from None
    if not 1 <= a < b:
        raise argparse.ArgumentTypeError(f"--layers wants 1 <= A < B, got {text!r}")
    return a, b


def extrapolate(at: dict[int, int], depth: int) -> int:
    """Bytes at `depth` on the line through the two measured (depth, bytes) points of `at`."""
    (a, ta), (b, tb) = sorted(at.items())
    return round(ta + (depth - a) * (tb - ta) / (b - a))


def device_count(cfg, requested: int) -> int:
    shape = tuple(cfg.mesh_shape)
    if -1 in shape:
        if not requested:
            raise SystemExit(f"mesh_shape {shape} has a -1: give --devices")
        return requested
    n = math.prod(shape)
    if requested and requested != n:
        raise SystemExit(f"--devices {requested} != the {n} devices of mesh_shape {shape}")
    return n


def shard_bytes(tree) -> int:
    """Bytes of one device's shards of every ShapeDtypeStruct (with a sharding) in `tree`."""
    import jax
    import numpy as np

    total = 0
    for x in jax.tree.leaves(tree):
        shape = x.sharding.shard_shape(x.shape)
        total += int(np.prod(shape, dtype=np.int64)) * np.dtype(x.dtype).itemsize
    return total


def abstract_batch(policy, rows: int, length: int, routed: tuple[int, int] | None):
    """A TrainBatch of ShapeDtypeStructs, rows over the batch axes (as place_batch puts it)."""
    import jax
    import jax.numpy as jnp

    from pivotrl_jax.train.batching import TrainBatch
    from pivotrl_jax.train.step import batch_sharding

    def spec(dtype, *trailing):
        shape = (rows, length, *trailing)
        return jax.ShapeDtypeStruct(shape, dtype, sharding=batch_sharding(policy, shape))

    i32, f32 = jnp.int32, jnp.float32
    return TrainBatch(
        input_ids=spec(i32),
        positions=spec(i32),
        segment_ids=spec(i32),
        parent_ids=spec(i32),
        targets=spec(i32),
        loss_mask=spec(f32),
        advantages=spec(f32),
        behaviour_logprobs=spec(f32),
        old_logprobs=spec(f32),
        ref_logprobs=spec(f32),
        routed_experts=None if routed is None else spec(jnp.int16, *routed),
    )


def model_config(cfg):
    from pivotrl_jax.models.config import ModelConfig
    from pivotrl_jax.models.weights import read_config

    overrides = {k: v for k, v in cfg.model_overrides.to_dict().items() if v and v != "none"}
    if "plan" in cfg and cfg.plan.get("hf_config"):
        return ModelConfig.from_hf_config(cfg.plan.hf_config.to_dict(), **overrides)
    if not cfg.model_dir:
        raise SystemExit("no architecture: set plan.hf_config or model_dir in the config")
    return read_config(cfg.model_dir, **overrides)


@dataclasses.dataclass
class Planned:
    """What `pivotrl train` would build for `cfg`, every array abstract (ShapeDtypeStruct with
    its NamedSharding)."""

    gcfg: Any
    model: Any
    policy: Any
    tx: Any
    state: Any  # TrainState
    reference: Any  # params or None
    batch: Any  # TrainBatch
    step: Any  # the jitted train step
    logprobs: Any  # the jitted logprob pass


def build(cfg, layers: int | None = None) -> Planned:
    """What `pivotrl train` builds for `cfg` (the model cut to `layers` decoder layers if given)."""
    from pivotrl_jax.config import mesh_from_config
    from pivotrl_jax.models.config import DTYPES
    from pivotrl_jax.models.sharding import MESH_AXES
    from pivotrl_jax.train import state as st
    from pivotrl_jax.train.grpo_config import grpo_config
    from pivotrl_jax.train.optim import make_optimizer, make_schedule, policy_config
    from pivotrl_jax.train.step import grpo_loss, make_logprobs_fn, make_train_step

    gcfg = grpo_config(cfg)
    model = policy_config(model_config(cfg), gcfg.optim)
    if layers is not None:
        dense = tuple(i for i in model.mlp_only_layers if i < layers)
        model = dataclasses.replace(model, num_hidden_layers=layers, mlp_only_layers=dense)
    mesh = mesh_from_config(gcfg.mesh_shape, MESH_AXES)
    policy = st.make_policy(model, mesh)
    tx = make_optimizer(gcfg.optim)
    state = st.abstract_train_state(policy, tx, gcfg.optim.dtype)
    reference = (
        st.abstract_params_like(policy, DTYPES[gcfg.reference_dtype])
        if gcfg.need_reference
        else None
    )
    rows = gcfg.pivots_per_step * gcfg.rollout.group_size
    L = sum(model.is_moe_layer(i) for i in range(model.num_hidden_layers))
    routed = (L, model.num_experts_per_tok) if gcfg.engine.routed_experts and L else None
    batch = abstract_batch(policy, rows, max(gcfg.buckets()), routed)
    # As train.parts.build_parts wires them.
    objective = grpo_loss(
        gcfg.loss, on_policy=gcfg.pi_old == "current", reference=reference is not None
    )
    step = make_train_step(
        policy, tx, objective, gcfg.step, make_schedule(gcfg.optim), master_dtype=gcfg.optim.dtype
    )
    logprobs = make_logprobs_fn(policy, gcfg.step.micro_batches, gcfg.step.logits_chunk_bytes)
    return Planned(gcfg, model, policy, tx, state, reference, batch, step, logprobs)


def compiled_temps(p: Planned) -> dict:
    """Temporaries, code size and compile seconds of the train step and the log-prob pass."""
    start = time.perf_counter()
    step = p.step.lower(p.state, p.batch).compile().memory_analysis()
    step_s = time.perf_counter() - start
    start = time.perf_counter()
    lp = p.logprobs.lower(p.reference or p.state.params, p.batch).compile().memory_analysis()
    logprobs_s = time.perf_counter() - start
    return {
        "train_step_temp": int(step.temp_size_in_bytes),
        "logprobs_temp": int(lp.temp_size_in_bytes),
        "code": int(max(step.generated_code_size_in_bytes, lp.generated_code_size_in_bytes)),
        "compile_s": {"train_step": round(step_s, 1), "logprobs": round(logprobs_s, 1)},
    }


def plan(cfg, layers: tuple[int, int] | None = None) -> dict:
    """The JSON record of the module docstring; `layers` = (A, B): temporaries extrapolated from
    compiles at depths A and B."""
    import jax
    import numpy as np

    p = build(cfg)
    gcfg, model, state, reference, batch = p.gcfg, p.model, p.state, p.reference, p.batch
    rows, length = batch.input_ids.shape
    if layers is None:
        temps = compiled_temps(p)
        fit = None
    else:
        shallow = {d: compiled_temps(build(cfg, d)) for d in layers}
        keys = ("train_step_temp", "logprobs_temp")
        depth = model.num_hidden_layers
        temps = {k: extrapolate({d: shallow[d][k] for d in layers}, depth) for k in keys}
        temps["code"] = max(t["code"] for t in shallow.values())
        temps["compile_s"] = {str(d): t["compile_s"] for d, t in shallow.items()}
        fit = {"layers": list(layers), **{k: [shallow[d][k] for d in layers] for k in keys}}

    per_device = {
        "params": shard_bytes(state.params),
        "opt_state": shard_bytes(state.opt_state),
        "reference": shard_bytes(reference) if reference is not None else 0,
        "batch": shard_bytes(batch),
        **{k: temps[k] for k in ("train_step_temp", "logprobs_temp", "code")},
    }
    resident = sum(per_device[k] for k in ("params", "opt_state", "reference", "batch"))
    total = resident + max(per_device["train_step_temp"], per_device["logprobs_temp"])
    total += per_device["code"]
    hbm = float(cfg.plan.hbm_gib) if "plan" in cfg else 0.0
    gib = 2.0**30
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    return {
        "config": cfg.get("name", ""),
        "devices": p.policy.mesh.size,
        "mesh": dict(p.policy.mesh.shape),
        "params_total": n_params,
        "model": {
            "layers": model.num_hidden_layers,
            "hidden": model.hidden_size,
            "experts": model.num_experts,
            "top_k": model.num_experts_per_tok,
            "dtype": model.dtype,
            "master_dtype": gcfg.optim.master_dtype,
            "reference_dtype": gcfg.reference_dtype,
            "remat": model.remat,
            "moe_dispatch": model.moe_dispatch,
            "moe_chunk": model.moe_chunk,
            "attention_chunk": model.attention_chunk,
        },
        "batch_shape": {
            "rows": rows,
            "length": length,
            "micro_batches": gcfg.step.micro_batches,
            "rows_per_micro_batch": rows // gcfg.step.micro_batches,
            "routed_experts": batch.routed_experts is not None,
        },
        "per_device_bytes": per_device,
        "per_device_gib": {k: round(v / gib, 3) for k, v in per_device.items()},
        "per_device_total_gib": round(total / gib, 3),
        "hbm_gib": hbm,
        "fits": bool(hbm and total / gib <= hbm),
        "temporaries": "compiled" if fit is None else "extrapolated",
        "temporaries_fit": fit,
        "compile_s": temps["compile_s"],
        "backend": "XLA:CPU (simulated devices)",
    }


def main(argv: list[str]) -> None:
    args, overrides = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pivotrl_jax.config import load_config

    cfg = load_config(args.config, overrides)
    n = device_count(cfg, args.devices)
    # The device count is fixed when jax starts: set it before the first jax import.
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}"
    ).strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    if jax.device_count() != n:
        raise SystemExit(f"got {jax.device_count()} devices, wanted {n} (jax imported too early?)")
    out = plan(cfg, args.layers)
    out["config"] = args.config
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
