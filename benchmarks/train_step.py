"""One GRPO train step: time, tokens/s and achieved FLOP/s over an in-process matmul's.

    python benchmarks/train_step.py --peer-config              # the peers' model and batch
    python benchmarks/train_step.py --peer-config --moe        # ... its Qwen3-MoE form
    python benchmarks/train_step.py --peer-config --groups 8 --group-size 8 --prompt 336 \
        --completion 48 --steps 3                              # the PivotRL shape
    python benchmarks/train_step.py --quick                    # ~50M dense/MoE, short CPU run
    python benchmarks/train_step.py --dtype bfloat16 --peak-tflops 989   # one H100 (bf16)

`--peer-config` builds the model and batch of the peer harnesses (`../shared/peers`, tunix and
TRL): a Qwen3 of 8 layers, hidden 512, 8 heads / 4 KV heads of 64, FFN 1536, vocab 8192, untied
(MoE: 8 experts top-2 of FFN 512, top-k weights renormalised), float32, random init; B=8 rows of
T=512 tokens (random ids in [2, V)), the last 256 completion tokens in the loss, advantages
N(0, 1); PPO clip 0.2, beta 0, token-mean, pi_old = the current policy detached (on-policy),
AdamW lr 1e-6 with global-norm clip 1.0. It prints one JSON line with the harness's fields:
`step_s_median` (median of --steps after --warmup, wall clock to `block_until_ready`),
`tokens_per_s`, `flops_per_step` = 6·N_active·B·T + 12·L·T·N·H·B·T (PaLM App. B, no causal
discount; N_active: the matmul weights a token passes through, routed experts and router for
MoE, output head, no embedding), `ratio_achieved_to_matmul` (achieved over a jitted 2048³
float32 matmul, median of 10, measured in this process after the steps) and `peak_rss_mb`.

With `--groups P --group-size G --prompt Tp --completion C` the batch is P groups of G samples
that share a prompt, laid out as this project trains them (train/batching.py: the prompt once,
the G responses after it). The peers process the same work as P·G rows of Tp + C tokens:
`tokens_per_s` and `flops_per_step_peer_equivalent` count that work; `flops_per_step` and the
ratio count the rows this step computes (`rows` x `row_length`) by the same formula.

Without `--peer-config`: the ~50M dense and MoE decoders of configs/model.py (small,
small-moe) at a few rows, plus the seconds per phase of one loop iteration with the in-process
JAX engine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

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
from pivotrl_jax.train.step import (
    StepConfig,
    grpo_loss,
    make_logprobs_fn,
    make_train_step,
    place_batch,
)

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
# The peer harnesses' model (../shared/peers/README.md), in HF naming.
PEER = dict(
    vocab_size=8192,
    hidden_size=512,
    intermediate_size=1536,
    num_hidden_layers=8,
    num_attention_heads=8,
    num_key_value_heads=4,
    head_dim=64,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
)
PEER_MOE = dict(
    num_experts=8, num_experts_per_tok=2, moe_intermediate_size=512, norm_topk_prob=True
)
FLOP_FORMULA = (
    "6*N_active*B*T + 12*L*T*H*hd*B*T (N_active = matmul params incl. lm_head, excl. embedding "
    "gather; MoE counts top-k experts + router; no causal discount)"
)


def matmul_flops_per_s(n: int, dtype, reps: int, stat=min) -> float:
    """2 n^3 / `stat` (min: the best case, as a peak should be; median: the harness's) of
    `reps` timed products of a jitted [n, n] matmul."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    f = jax.jit(jnp.matmul)
    f(a, b).block_until_ready()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        f(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / stat(times)


def step_flops(cfg: ModelConfig, rows: int, row_length: int) -> dict[str, float]:
    """The harness's FLOP model for `rows` x `row_length` tokens (also with every expert)."""
    tokens = rows * row_length
    every = cfg.replace(num_experts_per_tok=cfg.num_experts) if cfg.is_moe else cfg
    return {
        "matmul_params_active": metrics_lib.matmul_params_per_token(cfg),
        "matmul_params_all_experts": metrics_lib.matmul_params_per_token(every),
        "flops_per_step": tokens * metrics_lib.train_flops_per_token(cfg, row_length),
        "flops_per_step_all_experts": tokens * metrics_lib.train_flops_per_token(every, row_length),
        "attn_flops_per_step": tokens
        * 12
        * cfg.num_hidden_layers
        * cfg.num_attention_heads
        * cfg.head_dim
        * row_length,
    }


def random_sequences(
    groups: int, group_size: int, prompt: int, completion: int, vocab: int, seed: int = 0
) -> list[Sequence]:
    """`groups` random prompts of `prompt` ids in [2, V), each with `group_size` random
    completions of `completion` ids; one advantage ~ N(0, 1) per sample."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(groups):
        p = tuple(int(x) for x in rng.integers(2, vocab, prompt))
        for _ in range(group_size):
            out.append(
                Sequence(
                    p,
                    tuple(int(x) for x in rng.integers(2, vocab, completion)),
                    tuple(float(x) for x in -rng.uniform(5, 10, completion)),
                    float(rng.standard_normal()),
                )
            )
    return out


def timed_steps(step, state, batch, warmup: int, steps: int):
    """(state, per-step seconds, losses); the first `warmup` steps (compile) are not timed."""
    times, losses = [], []
    for i in range(warmup + steps):
        start = time.perf_counter()
        state, m = step(state, batch)
        jax.block_until_ready((state, m))
        dt = time.perf_counter() - start
        times.append(dt)
        losses.append(float(m["loss"]))
        print(f"step {i}: {dt:.3f}s loss={losses[-1]:.6f}", file=sys.stderr)
    return state, times, losses


def peer_step(args) -> dict:
    """One GRPO step on the peers' model and batch (or the PivotRL shape); the harness's JSON."""
    hf = dict(PEER, **(PEER_MOE if args.moe else {}))
    run = dict(remat=args.remat, scan_layers=not args.no_scan)
    if args.moe and args.dispatch:
        run["moe_dispatch"] = args.dispatch
    if args.layers:
        hf["num_hidden_layers"] = args.layers
    cfg = ModelConfig(**hf, **run)
    shared = args.groups > 0
    if shared:
        P, G, Tp, C = args.groups, args.group_size, args.prompt, args.completion
        seqs = random_sequences(P, G, Tp, C, cfg.vocab_size)
        group_len = Tp - 1 + G * (1 + C)
        row = -(-group_len // args.row_multiple) * args.row_multiple
        host = make_batch(seqs, length_buckets=(row,), share_prefix=True, pack=True)
    else:
        P, G, Tp, C = args.batch, 1, args.seq - args.completion, args.completion
        seqs = random_sequences(P, 1, Tp, C, cfg.vocab_size)
        host = make_batch(seqs, length_buckets=(args.seq,))
    rows, row_length = host.input_ids.shape
    policy = st.make_policy(cfg, single_device_mesh())
    tx = make_optimizer(OptimConfig(learning_rate=1e-6))
    params = st.init_params(policy, 0, jnp.float32)
    ref = st.create_reference(policy, params)
    state = st.create_train_state(policy, tx, params, 0)
    loss = LossConfig(clip_low=0.2, clip_high=0.2, tis_cap=None, beta=0.0)
    step_cfg = StepConfig(micro_batches=1, entropy_metric=not args.no_entropy)
    step = make_train_step(policy, tx, grpo_loss(loss, on_policy=True, reference=False), step_cfg)
    batch = place_batch(host, policy)

    logprobs = make_logprobs_fn(policy)
    jax.block_until_ready(logprobs(ref.params, batch))
    start = time.perf_counter()
    jax.block_until_ready(logprobs(ref.params, batch))
    ref_forward_s = time.perf_counter() - start

    state, times, losses = timed_steps(step, state, batch, args.warmup, args.steps)
    step_s = statistics.median(times[args.warmup :])
    matmul = matmul_flops_per_s(args.matmul_n, jnp.float32, 10, stat=statistics.median)
    fm = step_flops(cfg, rows, row_length)
    work_tokens = P * G * (Tp + C)
    out = {
        "peer": "pivotrl-jax",
        "variant": "qwen3-moe" if args.moe else "qwen3-dense",
        "dispatch": cfg.moe_dispatch if cfg.is_moe else None,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "config": hf,
        "scan_layers": cfg.scan_layers,
        "remat": cfg.remat,
        "entropy_metric": step_cfg.entropy_metric,
        "batch": P * G,
        "seq": Tp + C,
        "completion": C,
        "loss": "pivotrl_jax grpo_objective: ppo clip 0.2, beta 0, token-mean, pi_old = sg(pi)",
        "optimizer": "clip_by_global_norm(1.0) + adamw(lr=1e-06, b=(0.9, 0.999), wd=0)",
        "params_total": int(sum(x.size for x in jax.tree.leaves(state.params))),
        **fm,
        "step_s_median": step_s,
        "step_s_all": times[args.warmup :],
        "first_step_s": times[0],
        "ref_forward_s": ref_forward_s,
        "tokens_per_s": work_tokens / step_s,
        "achieved_flops_per_s": fm["flops_per_step"] / step_s,
        "achieved_flops_per_s_all_experts": fm["flops_per_step_all_experts"] / step_s,
        "matmul_n": args.matmul_n,
        "matmul_flops_per_s": matmul,
        "ratio_achieved_to_matmul": fm["flops_per_step"] / step_s / matmul,
        "losses": losses,
        "flop_formula": FLOP_FORMULA,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if shared:
        peer = step_flops(cfg, P * G, Tp + C)
        out.update(
            groups=P,
            group_size=G,
            prompt=Tp,
            rows=rows,
            row_length=row_length,
            row_tokens=int((host.segment_ids > 0).sum()),
            flops_per_step_peer_equivalent=peer["flops_per_step"],
            ratio_peer_equivalent_to_matmul=peer["flops_per_step"] / step_s / matmul,
        )
    return out


def bench_step(cfg: ModelConfig, rows: int, seq_len: int, steps: int, micro: int) -> dict:
    policy = st.make_policy(cfg, single_device_mesh())
    tx = make_optimizer(OptimConfig())
    state = st.create_train_state(policy, tx, st.init_params(policy, 0, jnp.float32), 0)
    step = make_train_step(
        policy,
        tx,
        grpo_loss(LossConfig(), on_policy=True, reference=False),
        StepConfig(micro_batches=micro, entropy_metric=False),
    )
    seqs = random_sequences(rows, 1, seq_len // 2, seq_len - seq_len // 2, cfg.vocab_size)
    batch = place_batch(make_batch(seqs, length_buckets=(seq_len,)), policy)
    state, times, _ = timed_steps(step, state, batch, 1, steps)
    seconds = statistics.mean(times[1:])
    tokens = rows * seq_len
    flops = tokens * metrics_lib.train_flops_per_token(cfg, seq_len)
    return {
        "rows": rows,
        "seq_len": seq_len,
        "micro_batches": micro,
        "params_per_token": metrics_lib.matmul_params_per_token(cfg),
        "step_s": seconds,
        "first_step_s": times[0],
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
    from pivotrl_jax.train.grpo_config import GrpoConfig, RolloutConfig
    from pivotrl_jax.train.parts import build_parts

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

    g = GrpoConfig(
        model_dir="",
        pivots="",
        pivots_per_step=pivots,
        max_prompt_len=prompt_len,
        steps=2,
        tensorboard=False,
        progress=False,
        rollout=RolloutConfig(group_size=group, max_new_tokens=new_tokens),
        step=StepConfig(micro_batches=micro, entropy_metric=True),
        drop_zero_variance=False,  # fixed batch shapes: the timed iteration does not compile
    )
    parts = build_parts(
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
    with tempfile.TemporaryDirectory() as tmp:
        # Time the second iteration that updates (the first compiles).
        updates, it = 0, 0
        while updates < 2 and it < 8:
            out, updated = loop.iteration(parts, it, Path(tmp))
            updates, it = updates + int(updated), it + 1
    keys = ("time/", "rollout/", "update/", "reward/mean", "groups/")
    return {k: v for k, v in out.items() if k.startswith(keys)}


def default_run(args) -> None:
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
    dispatch = args.dispatch or ("dense" if on_cpu else "ragged")
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peer-config", action="store_true", help="the peer harnesses' model/batch")
    p.add_argument("--moe", action="store_true", help="with --peer-config: the MoE form")
    p.add_argument("--batch", type=int, default=8, help="--peer-config rows")
    p.add_argument("--seq", type=int, default=512, help="--peer-config row length")
    p.add_argument("--completion", type=int, default=256, help="completion tokens per sample")
    p.add_argument("--groups", type=int, default=0, help="prompts sharing rows (PivotRL shape)")
    p.add_argument("--group-size", type=int, default=8, help="samples per prompt")
    p.add_argument("--prompt", type=int, default=336, help="prompt tokens (with --groups)")
    p.add_argument("--row-multiple", type=int, default=64, help="row lengths round up to this")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--matmul-n", type=int, default=2048)
    p.add_argument("--no-entropy", action="store_true", help="skip the entropy metric")
    p.add_argument("--no-scan", action="store_true", help="layers one by one, no lax.scan")
    p.add_argument("--remat", default="none", help="rematerialisation policy of a layer")
    p.add_argument("--quick", action="store_true", help="short CPU run (default mode)")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="compute dtype (parameters stay float32; default mode)",
    )
    p.add_argument("--peak-tflops", type=float, default=0.0, help="device peak for MFU")
    p.add_argument("--dispatch", default="", help="MoE dispatch (a models.moe.DISPATCH name)")
    p.add_argument("--layers", type=int, default=0, help="override the number of layers")
    p.add_argument("--rows", type=int, default=0)
    p.add_argument("--seq-len", type=int, default=0)
    args = p.parse_args()
    if args.peer_config:
        print(json.dumps(peer_step(args)), flush=True)
    else:
        default_run(args)


if __name__ == "__main__":
    main()
