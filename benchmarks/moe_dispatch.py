"""Forward + backward time of each MoE dispatch, alone and in a whole model, against a matmul.

    python benchmarks/moe_dispatch.py                    # the peers' MoE config (see below)
    python benchmarks/moe_dispatch.py --shape demo       # the demo's tiny-moe policy
    python benchmarks/moe_dispatch.py --dispatch dense,blocked --steps 5

Shapes (`--shape`):
  peers  the MoE config of ../shared/peers (tunix / TRL harness): Qwen3-MoE, 8 layers, hidden
         512, 8 heads of 64 (4 KV), 8 experts top-2 of F 512, vocab 8192; B = 8 rows of T = 512
  demo   configs/model.py:tiny-moe as the demo trains it: hidden 64, 4 layers, 8 experts top-2
         of F 64, vocab 1024; B = 16 rows of T = 512

For every dispatch in `--dispatch` (default: all registered) it times, median of `--steps` after
one warm-up (compilation):
  block  one MoE block (router + dispatch) on the B*T tokens: value and gradient w.r.t. the
         input and every weight;
  model  the whole decoder: mean next-token log-likelihood of the B x T batch and its gradient
         w.r.t. every parameter (the train step's forward + backward, no optimizer).
Useful FLOPs count the R routed experts only (a dispatch that does more work gets no credit):

  block  3 * 2 * (3 N R D F + N D E)                 (3 matmuls per expert + router, x3 fwd+bwd)
  model  6 * N_active * B*T + 12 * L * T * N * H * B*T   (the peers' flop_model)

and `ratio` = useful FLOP/s / the FLOP/s of a 2048^3 float32 matmul timed in the same process
(best of 10). Prints one JSON line. On a shared machine, compare ratios, not seconds, and run it
under `flock /tmp/pivotrl-bench.lock`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from demo_step import MODEL as DEMO_MODEL  # a sibling benchmark: benchmarks/ is on sys.path
from flax import nnx
from train_step import PEER, PEER_MOE, matmul_flops_per_s

from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.models.moe import DISPATCH
from pivotrl_jax.models.moe_routing import route
from pivotrl_jax.models.testing import random_model
from pivotrl_jax.models.transformer import forward
from pivotrl_jax.train.logprobs import token_logprobs

# The peers' MoE (benchmarks/train_step.py) and the demo's tiny-moe policy (configs/model.py,
# as benchmarks/demo_step.py reads it).
SHAPES = {
    "peers": dict(model=dict(PEER, **PEER_MOE), batch=8, length=512),
    "demo": dict(model=DEMO_MODEL, batch=16, length=512),
}


def timed(fn, args, steps: int) -> float:
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def model_flops(c: ModelConfig, B: int, T: int) -> float:
    """The peers' flop_model: 6 N_active tokens + 12 L T N H tokens (no causal discount)."""
    D, H = c.hidden_size, c.head_dim
    attn = D * H * (2 * c.num_attention_heads + 2 * c.num_key_value_heads)
    mlp = 3 * D * c.moe_intermediate_size * c.num_experts_per_tok + D * c.num_experts
    active = c.num_hidden_layers * (attn + mlp) + D * c.vocab_size
    tokens = B * T
    return 6 * active * tokens + 12 * c.num_hidden_layers * T * c.num_attention_heads * H * tokens


def block_case(c: ModelConfig, N: int, dispatch: str, steps: int) -> float:
    rng = np.random.default_rng(0)
    D, F, E, R = c.hidden_size, c.moe_intermediate_size, c.num_experts, c.num_experts_per_tok
    x = jnp.asarray(rng.normal(size=(1, N, D)), jnp.float32)
    ws = [
        jnp.asarray(rng.normal(size=s) * 0.02, jnp.float32)
        for s in [(D, E), (E, D, F), (E, D, F), (E, F, D)]
    ]
    fn = DISPATCH.get(dispatch)

    def loss(x, router, gate, up, down):
        weights, stats = route(x, router, R, c.norm_topk_prob)
        return jnp.sum(fn(x, weights, stats.experts, gate, up, down) ** 2)

    return timed(jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4))), (x, *ws), steps)


def model_case(c: ModelConfig, B: int, T: int, steps: int) -> float:
    graphdef, params = nnx.split(random_model(c, seed=0, weight_scale=0.02))
    ids = jnp.asarray(np.random.default_rng(1).integers(0, c.vocab_size, (B, T)), jnp.int32)
    pos = jnp.broadcast_to(jnp.arange(T), (B, T))
    mask = jnp.ones((B, T), jnp.int32)

    def loss(p):
        logits = forward(graphdef, p, ids, pos, mask)
        return -jnp.mean(token_logprobs(logits[:, :-1], ids[:, 1:]))

    return timed(jax.jit(jax.value_and_grad(loss)), (params,), steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="peers", choices=sorted(SHAPES))
    ap.add_argument("--dispatch", default=",".join(DISPATCH.names()))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--no-model", action="store_true", help="time the block only")
    args = ap.parse_args()
    shape = SHAPES[args.shape]
    B, T = shape["batch"], shape["length"]
    peak = matmul_flops_per_s(2048, jnp.float32, 10)
    out = {"shape": args.shape, "batch": B, "length": T, "backend": jax.default_backend()}
    out["matmul_flops_per_s"] = peak
    out["model_config"] = shape["model"]
    results = {}
    for name in args.dispatch.split(","):
        c = ModelConfig(**shape["model"], moe_dispatch=name)
        N = B * T
        routed = 3 * N * c.num_experts_per_tok * c.hidden_size * c.moe_intermediate_size
        block_flops = 3 * 2 * (routed + N * c.hidden_size * c.num_experts)
        r = {"block_s": block_case(c, N, name, args.steps)}
        r["block_ratio"] = block_flops / r["block_s"] / peak
        if not args.no_model:
            r["model_s"] = model_case(c, B, T, args.steps)
            r["model_ratio"] = model_flops(c, B, T) / r["model_s"] / peak
        results[name] = {k: round(v, 4) for k, v in r.items()}
        print(json.dumps({name: results[name]}), flush=True, file=sys.stderr)
    out["dispatches"] = results
    best = min(results, key=lambda k: results[k].get("model_s", results[k]["block_s"]))
    out["fastest"] = best
    print(json.dumps(out))


if __name__ == "__main__":
    main()
