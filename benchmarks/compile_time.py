"""Compile time of the GRPO train step against depth: the scan over layers vs one layer after
another.

    python benchmarks/compile_time.py                       # 4, 8, 16, 48 layers
    python benchmarks/compile_time.py --layers 4 8 --unrolled-max 8 --moe

Lowers and compiles the jitted step (forward, backward, AdamW) of the peer harnesses' model
(benchmarks/train_step.py --peer-config: hidden 512, 8 heads / 4 KV heads, vocab 8192; B=8 rows
of T=512) from abstract shapes, so no parameter is materialised. Prints one JSON object:
seconds (wall and CPU) to lower and to compile, per depth, with `scan_layers` on and, up to
`--unrolled-max` layers, off, and the lowered program's size in lines of StableHLO text (the
load-independent measure). The persistent compilation cache is not used.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
from train_step import PEER, PEER_MOE  # benchmarks/ is the script folder

from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.models.sharding import single_device_mesh
from pivotrl_jax.train import state as st
from pivotrl_jax.train.batching import TrainBatch
from pivotrl_jax.train.losses import LossConfig
from pivotrl_jax.train.optim import OptimConfig, make_optimizer
from pivotrl_jax.train.step import StepConfig, grpo_loss, make_train_step


def abstract_batch(rows: int, length: int) -> TrainBatch:
    ints = jax.ShapeDtypeStruct((rows, length), jnp.int32)
    floats = jax.ShapeDtypeStruct((rows, length), jnp.float32)
    return TrainBatch(ints, ints, ints, ints, ints, floats, floats, floats, floats, floats)


def compile_seconds(cfg: ModelConfig, rows: int, length: int) -> dict[str, float]:
    policy = st.make_policy(cfg, single_device_mesh())
    tx = make_optimizer(OptimConfig(learning_rate=1e-6))
    step = make_train_step(
        policy,
        tx,
        grpo_loss(LossConfig(tis_cap=None), on_policy=True, reference=False),
        StepConfig(),
    )
    state = st.abstract_train_state(policy, tx, jnp.float32)
    wall, cpu = time.perf_counter(), time.process_time()
    lowered = step.lower(state, abstract_batch(rows, length))
    lower_s, lower_cpu = time.perf_counter() - wall, time.process_time() - cpu
    hlo_lines = len(lowered.as_text().splitlines())
    wall, cpu = time.perf_counter(), time.process_time()
    lowered.compile()
    return {
        "hlo_lines": hlo_lines,
        "lower_s": lower_s,
        "lower_cpu_s": lower_cpu,
        "compile_s": time.perf_counter() - wall,
        "compile_cpu_s": time.process_time() - cpu,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, nargs="+", default=[4, 8, 16, 48])
    p.add_argument("--unrolled-max", type=int, default=16, help="deepest unrolled model to time")
    p.add_argument("--moe", action="store_true")
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--length", type=int, default=512)
    args = p.parse_args()
    jax.config.update("jax_enable_compilation_cache", False)
    hf = dict(PEER, **(PEER_MOE if args.moe else {}))
    out = {"variant": "qwen3-moe" if args.moe else "qwen3-dense", "rows": args.rows}
    out["length"], out["by_layers"] = args.length, {}
    for layers in args.layers:
        row = {}
        for scan in (True, False):
            if not scan and layers > args.unrolled_max:
                continue
            cfg = ModelConfig(**dict(hf, num_hidden_layers=layers), scan_layers=scan)
            row["scan" if scan else "unrolled"] = compile_seconds(cfg, args.rows, args.length)
        out["by_layers"][str(layers)] = row
        print(json.dumps({str(layers): row}), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
