"""Train-step throughput and MFU for ~50M dense and MoE decoders, and one loop iteration's split.

    python benchmarks/train_step.py --quick                       # short CPU run
    python benchmarks/train_step.py                               # CPU, longer
    python benchmarks/train_step.py --dtype bfloat16 --peak-tflops 989   # one H100 (bf16 dense)

Prints one JSON object:
  train_step_{dense,moe}: tokens/s of the jitted GRPO step (forward + backward + AdamW),
      achieved FLOP/s from 6N + 12·L·N·H·T per token (PaLM App. B; MoE counts routed experts);
  matmul_flops_per_s: a square matmul in the run's dtype, measured in this process;
  mfu_vs_matmul_peak_{dense,moe}: achieved / that matmul's FLOP/s (a measured, not a
      datasheet, peak); mfu_vs_peak_*: achieved / --peak-tflops, when given;
  loop_iteration: seconds per phase (rollout, verify, reference, update, sync) of one full
      iteration with the in-process JAX engine (second iteration; the first compiles).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.models.sharding import single_device_mesh
from pivotrl_jax.train import metrics as metrics_lib
from pivotrl_jax.train import state as st
from pivotrl_jax.train.batching import Sequence, make_batch
from pivotrl_jax.train.losses import LossConfig
from pivotrl_jax.train.optim import OptimConfig, make_optimizer
from pivotrl_jax.train.step import StepConfig, grpo_loss, make_train_step, place_batch

# ~50M parameters at V=32768 (configs/model.py: small / small-moe).
DENSE = dict(
    vocab_size=32768,
    hidden_size=512,
    intermediate_size=2048,
    num_hidden_layers=8,
    num_attention_heads=8,
    num_key_value_heads=4,
    head_dim=64,
)
MOE = dict(
    DENSE, num_experts=32, num_experts_per_tok=4, moe_intermediate_size=512, norm_topk_prob=True
)


def matmul_flops_per_s(n: int, dtype, reps: int) -> float:
    """2 n^3 / (fastest of `reps` timed products): the best case, as a peak should be."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    f = jax.jit(lambda x, y: x @ y)
    f(a, b).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def sequences(rows: int, seq_len: int, vocab: int, seed: int = 0) -> list[Sequence]:
    rng = np.random.default_rng(seed)
    prompt = seq_len // 2
    out = []
    for i in range(rows):
        resp = seq_len - prompt
        out.append(
            Sequence(
                tuple(int(x) for x in rng.integers(1, vocab, prompt)),
                tuple(int(x) for x in rng.integers(1, vocab, resp)),
                tuple(float(x) for x in -rng.uniform(5, 10, resp)),
                float((-1) ** i),
            )
        )
    return out


def bench_step(cfg: ModelConfig, rows: int, seq_len: int, steps: int, micro: int) -> dict:
    policy = st.make_policy(cfg, single_device_mesh())
    tx = make_optimizer(OptimConfig())
    state = st.create_train_state(policy, tx, st.init_params(policy, 0, jnp.float32), 0)
    step = make_train_step(
        policy, tx, grpo_loss(LossConfig()), StepConfig(micro_batches=micro, entropy_metric=False)
    )
    batch = place_batch(
        make_batch(sequences(rows, seq_len, cfg.vocab_size), length_buckets=(seq_len,)), policy
    )
    t0 = time.perf_counter()
    state, m = step(state, batch)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    start = time.perf_counter()
    for _ in range(steps):
        state, m = step(state, batch)
    jax.block_until_ready(m)
    seconds = (time.perf_counter() - start) / steps
    tokens = rows * seq_len
    flops = tokens * metrics_lib.train_flops_per_token(cfg, seq_len)
    return {
        "rows": rows,
        "seq_len": seq_len,
        "micro_batches": micro,
        "params_per_token": metrics_lib.matmul_params_per_token(cfg),
        "step_s": seconds,
        "first_step_s": compile_s,
        "tokens_per_s": tokens / seconds,
        "flops_per_s": flops / seconds,
    }


@dataclasses.dataclass(frozen=True)
class _Result:
    reward: float
    reason: str = "bench"


class _ParityScorer:
    """Reward 1 when the response's token ids sum to an even number: mixed groups on a random
    model (the decode below writes the ids as text)."""

    def score(self, record, text, time_limit_s):
        return _Result(float(sum(int(t) for t in text.split()) % 2 == 0))


def bench_loop(
    cfg: ModelConfig, pivots: int, group: int, prompt_len: int, new_tokens: int, micro: int = 1
) -> dict:
    from flax import nnx

    from pivotrl_jax.models.transformer import Transformer
    from pivotrl_jax.rollout.jax_engine import JaxEngine, JaxEngineOptions
    from pivotrl_jax.train import loop

    mesh = single_device_mesh()
    model = Transformer(cfg, rngs=nnx.Rngs(0))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    engine = JaxEngine(model, mesh=mesh, options=JaxEngineOptions(max_batch_size=pivots * group))
    rng = np.random.default_rng(0)

    class Data:
        def __next__(self):
            return {
                "records": [
                    {"prompt_ids": rng.integers(1, cfg.vocab_size, prompt_len)}
                    for _ in range(pivots)
                ]
            }

    g = loop.GrpoConfig(
        model_dir="",
        pivots="",
        pivots_per_step=pivots,
        max_prompt_len=prompt_len,
        steps=2,
        tensorboard=False,
        progress=False,
        rollout=loop.RolloutConfig(group_size=group, max_new_tokens=new_tokens),
        step=StepConfig(micro_batches=micro, entropy_metric=True),
        drop_zero_variance=False,  # fixed batch shapes: the timed iteration does not compile
    )
    parts = loop.build_parts(
        g,
        mesh,
        engine,
        lambda ids: " ".join(map(str, ids)),
        (),
        _ParityScorer(),
        Data(),
        params,
        cfg,
    )
    del model
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        from pathlib import Path

        # Time the second iteration that updates (the first compiles).
        updates, it = 0, 0
        while updates < 2 and it < 8:
            out, updated = loop.iteration(parts, it, Path(tmp))
            updates, it = updates + int(updated), it + 1
    keys = ("time/", "rollout/", "update/", "reward/mean", "groups/")
    return {k: v for k, v in out.items() if k.startswith(keys)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short CPU run")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="compute dtype (parameters stay float32)",
    )
    p.add_argument("--peak-tflops", type=float, default=0.0, help="device peak for MFU")
    p.add_argument(
        "--moe-dispatch",
        default="",
        choices=["", "dense", "ragged"],
        help="MoE dispatch (default: ragged on GPU/TPU, dense on CPU, where "
        "ragged_dot is slow); MFU counts only the routed experts' FLOPs either way",
    )
    p.add_argument("--layers", type=int, default=0, help="override the 8 layers")
    p.add_argument("--rows", type=int, default=0)
    p.add_argument("--seq-len", type=int, default=0)
    args = p.parse_args()
    on_cpu = jax.default_backend() == "cpu"
    rows = args.rows or (2 if args.quick else 4 if on_cpu else 32)
    seq_len = args.seq_len or (128 if args.quick else 256 if on_cpu else 1024)
    steps = 2 if args.quick else 3 if on_cpu else 10
    dtype = jnp.dtype(args.dtype)
    matmul = matmul_flops_per_s(1024 if on_cpu else 8192, dtype, 10 if on_cpu else 20)
    out = {
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "dtype": args.dtype,
        "matmul_dtype": args.dtype,
        "matmul_flops_per_s": matmul,
    }
    dispatch = args.moe_dispatch or ("dense" if on_cpu else "ragged")
    layers = args.layers or (4 if args.quick else 8)
    out["moe_dispatch"], out["layers"] = dispatch, layers
    for name, shape in (("dense", DENSE), ("moe", dict(MOE, moe_dispatch=dispatch))):
        cfg = ModelConfig(**dict(shape, num_hidden_layers=layers), dtype=args.dtype)
        r = bench_step(cfg, rows, seq_len, steps, micro=1)
        out[f"train_step_{name}"] = r
        out[f"mfu_vs_matmul_peak_{name}"] = r["flops_per_s"] / matmul
        if args.peak_tflops:
            out[f"mfu_vs_peak_{name}"] = r["flops_per_s"] / (args.peak_tflops * 1e12)
        print(json.dumps({k: v for k, v in out.items() if name in k}), flush=True)
    loop_cfg = ModelConfig(**dict(DENSE, num_hidden_layers=layers), dtype=args.dtype)
    if args.quick:
        out["loop_iteration"] = bench_loop(
            loop_cfg, pivots=4, group=4, prompt_len=64, new_tokens=16
        )
    else:
        out["loop_iteration"] = bench_loop(
            loop_cfg,
            pivots=4 if on_cpu else 16,
            group=4 if on_cpu else 16,
            micro=1 if on_cpu else 8,
            prompt_len=128,
            new_tokens=32 if on_cpu else 128,
        )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
