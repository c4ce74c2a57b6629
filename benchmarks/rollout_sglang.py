"""SGLang rollout engine on a real CPU SGLang server: decode speed, refit time, logprob agreement.

    .venv/bin/python benchmarks/rollout_sglang.py [--sizes 64x2,256x4,512x8] [--out FILE]

Needs the CPU SGLang environment (launch/sglang_cpu_env.sh). For each dense size (hidden x
layers) it builds two random float32 Qwen3 models, starts one CPU server, and measures
  - decode tokens/s: P prompts x n samples x T new tokens at temperature 1 (informational: a
    2-core CPU, the torch_native backend);
  - refit seconds: `update_weights` (POST /update_weights_from_disk, cache flushed) of the other
    model's folder, median of a few swaps, against the parameter count;
  - the max |SGLang logprob - transformers float32 log_softmax| over sampled tokens (float32
    rounding grows with the logits' size: `mean_abs_logprob` gives the scale).
Then one tiny Qwen3-MoE for the MoE logprob difference. Prints one JSON object.
The random models and their transformers reference come from tests/rollout/sglang_support.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# benchmarks/profile.py would shadow the standard library's `profile` (torch imports cProfile).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "benchmarks"]
sys.path.insert(0, str(REPO / "tests" / "rollout"))
sys.path.insert(0, str(REPO))

import sglang_support as support  # noqa: E402

from pivotrl_jax.rollout.base import SamplingParams  # noqa: E402
from pivotrl_jax.rollout.sglang_engine import SglangEngine  # noqa: E402


def measure(kind: str, hidden: int, layers: int, root: Path, decode: bool) -> dict:
    # std 0.1 at width 64, scaled by 1/sqrt(width): logits of a similar size at every width.
    std = 0.1 * (64 / hidden) ** 0.5
    models = {
        name: support.build_model(kind, root / name, seed, hidden=hidden, layers=layers, std=std)
        for name, seed in (("a", 0), ("b", 1))
    }
    params = sum(p.numel() for p in models["a"].parameters())
    start = time.perf_counter()
    server = support.launch_cpu_server(root / "a", root / "server.log", weight_version="0")
    result: dict = {"kind": kind, "hidden": hidden, "layers": layers, "params": params,
                    "server_start_s": round(time.perf_counter() - start, 1)}  # fmt: skip
    try:
        engine = SglangEngine([server.url])
        engine.generate([[1, 2, 3]], SamplingParams(max_new_tokens=4))  # warm-up
        prompts = support.random_prompts([8, 32, 64], seed=0)
        groups = engine.generate(prompts, SamplingParams(max_new_tokens=32), n=4)
        result["max_abs_logprob_diff"] = support.max_logprob_diff(models["a"], prompts, groups)
        result["mean_abs_logprob"] = round(
            float(np.mean([abs(x) for g in groups for c in g for x in c.logprobs])), 3
        )
        if decode:
            prompts = support.random_prompts([16] * 8, seed=1)
            start = time.perf_counter()
            groups = engine.generate(prompts, SamplingParams(max_new_tokens=64), n=4)
            wall = time.perf_counter() - start
            tokens = sum(len(c.token_ids) for g in groups for c in g)
            result["decode"] = {"prompts": 8, "n": 4, "new_tokens": 64, "tokens": tokens,
                                "seconds": round(wall, 3),
                                "tokens_per_s": round(tokens / wall, 1)}  # fmt: skip
        refits = []
        for version, name in enumerate(("b", "a", "b", "a"), start=1):
            engine.update_weights(root / name, version=version)
            refits.append(engine.last_refit_s)
        result["refit_s_median"] = round(statistics.median(refits), 4)
        result["refit_s_all"] = [round(s, 4) for s in refits]
        # After the swaps the server serves "a" again: logprobs must follow it.
        groups = engine.generate(prompts[:2], SamplingParams(max_new_tokens=16), n=2)
        result["max_abs_logprob_diff_after_refit"] = support.max_logprob_diff(
            models["a"], prompts[:2], groups
        )
        engine.close()
    finally:
        server.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="64x2,256x4,512x8", help="dense hidden x layers")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    if not support.SGLANG_PYTHON.exists():
        sys.exit(f"{support.SGLANG_PYTHON} missing: run launch/sglang_cpu_env.sh first")
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    runs = []
    with tempfile.TemporaryDirectory(prefix="rollout_sglang_") as tmp:
        for hidden, layers in sizes:
            root = Path(tmp) / f"dense_{hidden}x{layers}"
            runs.append(measure("dense", hidden, layers, root, decode=True))
            print(json.dumps(runs[-1]), file=sys.stderr)
        runs.append(measure("moe", 64, 2, Path(tmp) / "moe_64x2", decode=False))
        print(json.dumps(runs[-1]), file=sys.stderr)
    dense = [r for r in runs if r["kind"] == "dense"]
    report = {
        "device": "cpu (2 cores), sglang 0.5.23, torch_native attention, float32",
        "decode_tokens_per_s": {
            f"{r['hidden']}x{r['layers']}": r["decode"]["tokens_per_s"] for r in dense
        },
        "refit_s_vs_params": [
            {"kind": r["kind"], "params": r["params"], "refit_s": r["refit_s_median"]} for r in runs
        ],
        "sglang_vs_transformers_max_abs_logprob_diff_dense": max(
            max(r["max_abs_logprob_diff"], r["max_abs_logprob_diff_after_refit"]) for r in dense
        ),
        "sglang_vs_transformers_max_abs_logprob_diff_moe": max(
            runs[-1]["max_abs_logprob_diff"], runs[-1]["max_abs_logprob_diff_after_refit"]
        ),
        "runs": runs,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
