"""JAX rollout engine vs transformers `generate`: decode tokens/s on one model, and refit time.

    .venv/bin/python benchmarks/rollout.py [--batch 16] [--prompt-len 32] [--new-tokens 128]
                                           [--refit-sizes 64x2,256x4,512x8] [--device-info]

Builds one random float32 Qwen3 model in transformers (`--hidden` x `--layers`), saves it and
loads it into the JAX engine, then times greedy generation of `--batch` prompts of `--prompt-len`
tokens in both, each after a warm-up call (so compilation is excluded), median of `--repeats`:
  decode tokens/s = B * (T_new - 1) / (t(T_new) - t(1))   (prefill and first token subtracted)
  generate tokens/s = B * T_new / t(T_new)
Both produce the same greedy tokens on the same weights (`"tokens_match"`). Then, for each
`--refit-sizes` entry (hidden x layers), `update_weights` seconds against the parameter count:
from an `nnx.State` already on device (what the trainer hands over) and from an HF folder.
Where the CPU SGLang environment exists (`--sglang auto`), a real SGLang server samples from tiny
dense and MoE checkpoints and `"sglang_vs_jax_max_abs_logprob_diff_dense"` / `_moe` compare its
logprobs with the JAX model's on the same tokens.
Prints one JSON object; `--device-info` adds the JAX and torch platforms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import jax
import numpy as np

from pivotrl_jax.models import ModelConfig, default_positions, forward
from pivotrl_jax.models.testing import TINY_CONFIGS, build_reference
from pivotrl_jax.rollout.base import SamplingParams
from pivotrl_jax.rollout.jax_engine import JaxEngine, JaxEngineOptions

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Run as a script, this folder heads sys.path, and its profile.py would shadow the standard
# library's `profile` module, which torch imports (through cProfile): torch is imported below,
# inside the functions that use it, after this.
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]


def model_config(hidden: int, layers: int, vocab: int) -> ModelConfig:
    heads = max(hidden // 64, 2)
    return ModelConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=3 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(heads // 2, 1),
        head_dim=hidden // heads,
        rope_theta=10_000.0,
    )


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_jax(engine: JaxEngine, prompts: list[list[int]], new_tokens: int, repeats: int):
    def run(t):
        params = SamplingParams(max_new_tokens=t, temperature=0.0)
        return engine.generate(prompts, params)

    run(1), run(new_tokens)  # compile both programs
    return (
        median_seconds(lambda: run(1), repeats),
        median_seconds(lambda: run(new_tokens), repeats),
        [list(g[0].token_ids) for g in run(new_tokens)],
    )


def time_transformers(model, prompts: list[list[int]], new_tokens: int, repeats: int):
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device)
    ids = torch.tensor(prompts, device=device)

    def run(t):
        with torch.no_grad():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=t,
                min_new_tokens=t,
                pad_token_id=0,
            )
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    run(1), run(new_tokens)  # warm up
    out = run(new_tokens)[:, ids.shape[1] :].cpu().tolist()
    return (
        median_seconds(lambda: run(1), repeats),
        median_seconds(lambda: run(new_tokens), repeats),
        out,
    )


def decode_benchmark(args, tmp: str) -> dict:
    cfg = model_config(args.hidden, args.layers, args.vocab)
    hf = build_reference(cfg, os.path.join(tmp, "decode"), seed=0)
    options = JaxEngineOptions(max_batch_size=args.batch, matmul_precision=args.precision)
    engine = JaxEngine.from_pretrained(os.path.join(tmp, "decode"), options=options)
    rng = np.random.default_rng(0)
    prompts = rng.integers(0, cfg.vocab_size, (args.batch, args.prompt_len)).tolist()
    B, T = args.batch, args.new_tokens
    j1, jT, j_tokens = time_jax(engine, prompts, T, args.repeats)
    h1, hT, h_tokens = time_transformers(hf, prompts, T, args.repeats)
    jax_decode = B * (T - 1) / (jT - j1)
    hf_decode = B * (T - 1) / (hT - h1)
    return {
        "model": {
            "hidden": args.hidden,
            "layers": args.layers,
            "vocab": args.vocab,
            "params": sum(p.numel() for p in hf.parameters()),
        },
        "jax_matmul_precision": args.precision,
        "batch": B,
        "prompt_len": args.prompt_len,
        "new_tokens": T,
        "jax_decode_tokens_per_s": round(jax_decode, 1),
        "transformers_decode_tokens_per_s": round(hf_decode, 1),
        "jax_vs_transformers_decode_speedup": round(jax_decode / hf_decode, 2),
        "jax_generate_tokens_per_s": round(B * T / jT, 1),
        "transformers_generate_tokens_per_s": round(B * T / hT, 1),
        "tokens_match": j_tokens == h_tokens,
    }


def refit_one(hidden: int, layers: int, args, tmp: str) -> dict:
    cfg = model_config(hidden, layers, args.vocab)
    path = os.path.join(tmp, f"refit_{hidden}x{layers}")
    build_reference(cfg, path, seed=1)
    engine = JaxEngine.from_pretrained(path)
    versions = iter(range(10**6))

    def from_state() -> float:
        # A fresh on-device state each time, as a train step would produce.
        state = jax.tree.map(lambda x: x * 1.0, engine.params)
        jax.block_until_ready(state)
        start = time.perf_counter()
        engine.update_weights(state, version=next(versions))
        jax.block_until_ready(engine.params)
        return time.perf_counter() - start

    def from_folder() -> None:
        engine.update_weights(path, version=next(versions))
        jax.block_until_ready(engine.params)

    from_state(), from_folder()  # warm up
    return {
        "hidden": hidden,
        "layers": layers,
        "params": int(sum(x.size for x in jax.tree.leaves(engine.params))),
        "refit_s_device_state": statistics.median(from_state() for _ in range(args.repeats)),
        "refit_s_hf_folder": median_seconds(from_folder, args.repeats),
    }


def refit_benchmark(args, tmp: str) -> list[dict]:
    sizes = [tuple(int(x) for x in size.split("x")) for size in args.refit_sizes.split(",")]
    return [refit_one(hidden, layers, args, tmp) for hidden, layers in sizes]


def sglang_python(choice: str) -> str | None:
    """The interpreter of the CPU SGLang environment, or None when the comparison is off."""
    path = os.environ.get("PIVOTRL_SGLANG_PYTHON", os.path.join(REPO, ".venv-sglang/bin/python"))
    if choice == "off" or (choice == "auto" and not os.path.exists(path)):
        return None
    return path


def sglang_comparison(python: str, precision: str, tmp: str) -> dict:
    """max |SGLang logprob - JAX logprob| of the tokens a CPU SGLang server sampled (T = 1),
    the JAX side from the engine's model on the same checkpoint (dense and MoE)."""
    from pivotrl_jax.rollout.server import ServerConfig, launch
    from pivotrl_jax.rollout.sglang_engine import SglangEngine

    result = {}
    for kind, name in (("dense", "dense_untied_mha"), ("moe", "moe_topk_norm")):
        path = os.path.join(tmp, f"sglang_{kind}")
        config = TINY_CONFIGS[name].replace(max_position_embeddings=512)
        build_reference(config, path, seed=3)
        engine = JaxEngine.from_pretrained(path)
        rng = np.random.default_rng(1)
        prompts = [rng.integers(0, config.vocab_size, n).tolist() for n in (3, 9, 17, 30)]
        server_config = ServerConfig(
            model_path=path,
            preset="cpu",
            python=python,
            log_path=os.path.join(tmp, f"sglang_{kind}.log"),
        )
        with launch(server_config) as server:
            client = SglangEngine([server.url])
            groups = client.generate(prompts, SamplingParams(max_new_tokens=16, seed=0), n=4)
            client.close()
        with jax.default_matmul_precision(precision):
            diff = max(
                float(np.max(np.abs(np.asarray(c.logprobs) - score(engine, prompt, c.token_ids))))
                for prompt, group in zip(prompts, groups)
                for c in group
            )
        result[f"sglang_vs_jax_max_abs_logprob_diff_{kind}"] = diff
    return result


def score(engine: JaxEngine, prompt: list[int], tokens: tuple[int, ...]) -> np.ndarray:
    """log pi(tokens | prompt) from one uncached forward of the engine's model."""
    ids = np.asarray([list(prompt) + list(tokens)], np.int32)
    mask = np.ones_like(ids)
    logits = forward(engine.graphdef, engine.params, ids, default_positions(mask), mask)
    logp = np.asarray(jax.nn.log_softmax(logits[0], -1))
    L = len(prompt)
    return logp[np.arange(L - 1, L - 1 + len(tokens)), np.asarray(tokens)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--refit-sizes", default="64x2,256x4,512x8")
    parser.add_argument("--device-info", action="store_true")
    # True float32 on both sides (torch's CUDA matmuls do not use TF32 by default).
    parser.add_argument("--precision", default="highest", help="JAX matmul precision")
    parser.add_argument(
        "--sglang",
        choices=("auto", "on", "off"),
        default="auto",
        help="compare logprobs with a CPU SGLang server (auto: if .venv-sglang)",
    )
    args = parser.parse_args()
    result = {}
    if args.device_info:
        import torch

        result["device"] = {
            "jax_backend": jax.default_backend(),
            "jax_devices": [str(d) for d in jax.devices()],
            "jax_device_kind": jax.devices()[0].device_kind,
            "torch_device": "cuda" if torch.cuda.is_available() else "cpu",
            "torch_threads": torch.get_num_threads(),
        }
    with tempfile.TemporaryDirectory() as tmp:
        result["decode"] = decode_benchmark(args, tmp)
        result["jax_vs_transformers_decode_speedup"] = result["decode"][
            "jax_vs_transformers_decode_speedup"
        ]
        result["refit"] = refit_benchmark(args, tmp)
        python = sglang_python(args.sglang)
        if python:
            result.update(sglang_comparison(python, args.precision, tmp))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
