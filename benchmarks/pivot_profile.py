"""Profiling throughput with the in-process JAX engine on a tiny model.

    python benchmarks/pivot_profile.py [--trajectories 40] [--k 8] [--max-new-tokens 32]

Prints JSON: candidates/s, rollouts/s, generated tokens/s and `non_engine_time_fraction`
(time outside the engine's generate calls / wall time; target <= 0.10), after one warm-up chunk
so compilation is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trajectories", type=int, default=40)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--candidates-per-call", type=int, default=16)
    ap.add_argument("--model", default="", help="HF folder (default: a fresh tiny random model)")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from pivotrl_jax import cli
    from pivotrl_jax.data import records as records_io
    from pivotrl_jax.envs import generate_sft
    from pivotrl_jax.pivots.profile import (
        DomainVerifiers,
        ProfileConfig,
        profile_chunk,
        run_profile,
    )
    from pivotrl_jax.rollout.jax_engine import JaxEngine
    from pivotrl_jax.rollout.text import completion_text

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or str(tmp / "model")
        if not args.model:
            assert (
                cli.main(["init-model", "--config=configs/model.py:tiny-moe", "--output", model])
                == 0
            )
        half = args.trajectories // 2
        rows = generate_sft("terminal", half, seed=0) + generate_sft("tool_use", half, seed=0)
        (tmp / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        assert (
            cli.main(
                [
                    "extract",
                    "--input",
                    str(tmp / "sft.jsonl"),
                    "--output",
                    str(tmp / "cands"),
                    "--tokenizer",
                    model,
                ]
            )
            == 0
        )
        cands = list(records_io.read_records(tmp / "cands", prefix="candidates"))
        tok = AutoTokenizer.from_pretrained(model)
        engine = JaxEngine.from_pretrained(model)
        cfg = ProfileConfig(
            k=args.k,
            max_new_tokens=args.max_new_tokens,
            candidates_per_call=args.candidates_per_call,
        )
        verifiers = DomainVerifiers()

        def decode(ids):
            return completion_text(tok, ids)

        t0 = time.perf_counter()
        profile_chunk(cands[: cfg.candidates_per_call], engine, decode, verifiers, cfg, 0)
        warmup = time.perf_counter() - t0
        s = run_profile(cands, str(tmp / "prof"), engine, decode, verifiers, cfg, progress=False)
        wall = s["seconds_this_run"]
        print(
            json.dumps(
                {
                    "candidates": s["candidates"],
                    "k": args.k,
                    "candidates_per_s": s["candidates"] / wall,
                    "rollouts_per_s": s["rollouts"] / wall,
                    "generated_tokens_per_s": s["generated_tokens"] / wall,
                    "non_engine_time_fraction": s["non_engine_time_fraction"],
                    "verify_seconds": s["verify_seconds_this_run"],
                    "engine_seconds": s["engine_seconds_this_run"],
                    "wall_seconds": wall,
                    "warmup_seconds": warmup,
                    "zero_variance_fraction": s["zero_variance_fraction"],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
