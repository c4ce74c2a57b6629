"""Forward+backward throughput and model-FLOP utilisation of the dense and MoE decoders.

    .venv/bin/python benchmarks/forward.py [--quick] [--dtype bfloat16] [--peak-tflops 989]
                                           [--seq-len 512] [--batch 2] [--steps 3]
                                           [--moe-dispatch ragged] [--remat none]

Two models of about the same active size: a ~52M-parameter dense Qwen3 (D 512, 6 layers, 8
heads of 64, 4 KV heads, F 1536, V 32000, untied) and a Qwen3-MoE with the same attention and
8 experts of F 768, 2 per token (so the active MLP equals the dense one). One step = logits of
[batch, seq-len] tokens, mean next-token cross-entropy, gradient w.r.t. every parameter; jitted,
one warm-up step (compilation) excluded, the median of `--steps` timed steps reported.

Model FLOPs per step (PaLM, arXiv 2204.02311 App. B; nanoGPT's `estimate_mfu`):

    FLOPs = 6 * N_active * B * T  +  12 * L * (N * H) * T * B * T

N_active = the weights each token multiplies: attention q/k/v/o, the MLP (R of E experts in a
MoE layer) and the router, plus the output head (V x D); the input embedding is a lookup and is
not counted. The second term is attention scores and values (QK^T and PV, 2 * 2 * T * N * H
per token forward, x 3 with the backward), over the full T x T square as our kernel computes
it. Work a dispatch does beyond that (the dense MoE dispatch runs all E experts) is not model
FLOPs and lowers the MFU, as it should.

MFU is reported against the FLOP/s of a large `--dtype` matmul measured in the same run
(`"mfu_vs_matmul_peak_*"`, the attainable peak of this device and dtype) and, with
`--peak-tflops` (a chip's datasheet number, e.g. 989 for H100 SXM bf16 dense), against that
(`"mfu_vs_chip_peak_*"`). float32 runs use JAX's default matmul precision (TF32 on recent
NVIDIA GPUs). Prints one JSON object.

Seen on one H100 80GB HBM3 (jax 0.11.2, flax 0.12.10), --dtype bfloat16 --batch 16, T 512:
dense 0.56M tokens/s, 130 model TFLOP/s (13% of 989, 19% of the measured 677-714 matmul
peak); MoE 0.28M tokens/s with the ragged dispatch, 0.42M with the dense one (E = 8 is small
enough that computing every expert beats sorting tokens). A 512-wide model is too narrow to
fill the chip; the numbers are a regression baseline, not a ceiling.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp

from pivotrl_jax.models import ModelConfig, forward
from pivotrl_jax.models.testing import random_model
from pivotrl_jax.train.logprobs import token_logprobs

_SHARED = dict(
    vocab_size=32000,
    hidden_size=512,
    num_hidden_layers=6,
    num_attention_heads=8,
    num_key_value_heads=4,
    head_dim=64,
    intermediate_size=1536,
    rope_theta=1e6,
)
DENSE = ModelConfig(**_SHARED)
MOE = ModelConfig(
    **_SHARED, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=768, norm_topk_prob=True
)


def active_params(c: ModelConfig) -> int:
    """Weights one token multiplies (see the module docstring); excludes the input embedding."""
    D, N, K, H = c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim
    total = c.vocab_size * D  # output head, tied or not
    for i in range(c.num_hidden_layers):
        total += D * N * H * 2 + D * K * H * 2  # q, o; k, v
        if c.is_moe_layer(i):
            total += D * c.num_experts + c.num_experts_per_tok * 3 * D * c.moe_intermediate_size
        else:
            total += 3 * D * c.intermediate_size
    return total


def total_params(c: ModelConfig) -> int:
    D = c.hidden_size
    moe_extra = sum(
        (c.num_experts - c.num_experts_per_tok) * 3 * D * c.moe_intermediate_size
        for i in range(c.num_hidden_layers)
        if c.is_moe_layer(i)
    )
    embed = 0 if c.tie_word_embeddings else c.vocab_size * D
    return active_params(c) + moe_extra + embed


def step_flops(c: ModelConfig, batch: int, seq: int) -> float:
    attn = 12 * c.num_hidden_layers * c.num_attention_heads * c.head_dim * seq
    return float(6 * active_params(c) + attn) * batch * seq


def timed(fn, steps: int) -> float:
    jax.block_until_ready(fn())  # compile + warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_tflops(dtype, size: int, steps: int) -> float:
    a = jax.random.normal(jax.random.key(0), (size, size), dtype)
    b = jax.random.normal(jax.random.key(1), (size, size), dtype)
    f = jax.jit(lambda a, b: a @ b)
    return 2 * size**3 / timed(lambda: f(a, b), steps) / 1e12


def train_step_time(config: ModelConfig, batch: int, seq: int, steps: int) -> float:
    from flax import nnx

    graphdef, params = nnx.split(random_model(config, seed=0, weight_scale=0.02))
    ids = jax.random.randint(jax.random.key(2), (batch, seq), 0, config.vocab_size)
    pos = jnp.broadcast_to(jnp.arange(seq), ids.shape)
    mask = jnp.ones_like(ids)

    def loss(p):
        logits = forward(graphdef, p, ids, pos, mask)
        return -jnp.mean(token_logprobs(logits[:, :-1], ids[:, 1:]))

    grad = jax.jit(jax.value_and_grad(loss))
    return timed(lambda: grad(params), steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seq 128, batch 1, 2 steps")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--moe-dispatch", default="ragged")
    parser.add_argument("--remat", default="none", choices=["none", "full", "dots"])
    parser.add_argument(
        "--matmul-size", type=int, default=None, help="default 2048 on CPU, 8192 on accelerators"
    )
    args = parser.parse_args()
    if args.quick:
        args.seq_len, args.batch, args.steps = 128, 1, 2
    on_cpu = jax.default_backend() == "cpu"
    size = args.matmul_size or (2048 if on_cpu else 8192)
    run = dict(dtype=args.dtype, param_dtype="float32", remat=args.remat)
    peak = matmul_tflops(jnp.dtype(args.dtype), size, max(args.steps, 3))
    out = {
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "dtype": args.dtype,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "moe_dispatch": args.moe_dispatch,
        "remat": args.remat,
        "matmul_peak_tflops": peak,
        "matmul_size": size,
        "flops_formula": "6 * N_active * B * T + 12 * L * N * H * T * B * T",
    }
    for kind, config in (
        ("dense", DENSE.replace(**run)),
        ("moe", MOE.replace(**run, moe_dispatch=args.moe_dispatch)),
    ):
        seconds = train_step_time(config, args.batch, args.seq_len, args.steps)
        tflops = step_flops(config, args.batch, args.seq_len) / seconds / 1e12
        out[f"params_{kind}"] = total_params(config)
        out[f"active_params_{kind}"] = active_params(config)
        out[f"step_s_{kind}"] = seconds
        out[f"tokens_per_s_{kind}"] = args.batch * args.seq_len / seconds
        out[f"model_tflops_{kind}"] = tflops
        out[f"mfu_vs_matmul_peak_{kind}"] = tflops / peak
        if args.peak_tflops:
            out[f"mfu_vs_chip_peak_{kind}"] = tflops / args.peak_tflops
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
