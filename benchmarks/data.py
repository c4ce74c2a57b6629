"""Throughput of the data layer: extraction and the grain loader, on this machine.

    python benchmarks/data.py [--trajectories 2000] [--batch-size 64] [--seed 0]

Generates synthetic tool-use trajectories (a system prompt, two tools, one to three user
queries, each answered by one to three tool-call rounds, sometimes parallel, then a message),
writes them as JSONL and times `extract` without a tokenizer (messages only) and with the tiny
project tokenizer (prompt ids, completion ids, token check). Then times the loader over the
tokenised candidate shards: 0 workers, shuffled, batches of `--batch-size`, several epochs.
Rates are per CPU-second of this process (`time.process_time`), so a busy shared machine does
not deflate them; `"cpu_share"` is the fraction of wall time the process actually ran. Prints
one JSON object with `"extract_trajectories_per_s"`, `"extract_tokenized_trajectories_per_s"`,
`"loader_records_per_s"` (the loader is meant to sustain 20k records/s) and the sizes used.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import grain

from pivotrl_jax.data import extraction, loader, records
from pivotrl_jax.data.tokenizer import train_tokenizer

CITIES = ["Paris", "Oslo", "Lima", "Tokyo", "Austin", "Berlin", "Cairo", "Quito"]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "run",
            "description": "Run a shell command.",
            "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
        },
    },
]


def synthetic_trajectory(i: int, rng: random.Random) -> dict:
    msgs = [
        {"role": "system", "content": "You are a careful assistant. Use the tools when needed."}
    ]
    n_call = 0
    for q in range(rng.randint(1, 3)):
        cities = rng.sample(CITIES, 3)
        msgs.append(
            {
                "role": "user",
                "content": f"Question {q}: compare the weather in {', '.join(cities)}.",
            }
        )
        for _ in range(rng.randint(1, 3)):
            calls = []
            for city in cities[: rng.choice([1, 1, 2, 3])]:
                args = {"city": city, "unit": rng.choice(["celsius", "fahrenheit"])}
                calls.append(
                    {
                        "id": f"c{n_call}",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": json.dumps(args)},
                    }
                )
                n_call += 1
            msgs.append({"role": "assistant", "content": "", "tool_calls": calls})
            for c in calls:
                temp = rng.randint(-10, 35)
                msgs.append(
                    {
                        "role": "tool",
                        "tool_call_id": c["id"],
                        "content": json.dumps({"temp": temp, "sky": "clear"}),
                    }
                )
        msgs.append(
            {
                "role": "assistant",
                "content": f"Here is the comparison for question {q}: "
                + "warm " * rng.randint(5, 40),
            }
        )
    return {
        "id": f"bench{i}",
        "domain": rng.choice(["weather", "travel"]),
        "tools": TOOLS,
        "messages": msgs,
    }


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trajectories", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument(
        "--loader-records", type=int, default=100_000, help="records to read through the loader"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sft = tmp / "sft.jsonl"
        with open(sft, "w", encoding="utf-8") as f:
            for i in range(args.trajectories):
                f.write(json.dumps(synthetic_trajectory(i, rng)) + "\n")
        tokenizer = train_tokenizer([], vocab_size=1024)

        m, cpu_plain, wall_plain = timed(lambda: extraction.extract([sft], tmp / "plain"))
        m_tok, cpu_tok, wall_tok = timed(
            lambda: extraction.extract([sft], tmp / "tok", tokenizer=tokenizer)
        )

        paths = records.shard_paths(tmp / "tok", "candidates")
        max_len = max(len(r["prompt_ids"]) for r in records.read_records(tmp / "tok", "candidates"))
        cfg = loader.LoaderConfig(
            batch_size=args.batch_size, max_prompt_len=max_len, pad_id=0, seed=args.seed
        )
        it = iter(loader.dataset(paths, cfg, grain.sharding.ShardOptions(0, 1)))
        n_batches = max(1, args.loader_records // args.batch_size)

        def drain():
            for _ in range(n_batches):
                next(it)

        _, cpu_load, wall_load = timed(drain)
        record_bytes = sum(os.path.getsize(p) for p in paths) / m_tok["candidates"]

    print(
        json.dumps(
            {
                "trajectories": args.trajectories,
                "candidates": m["candidates"],
                "extract_trajectories_per_s": round(args.trajectories / cpu_plain, 1),
                "extract_candidates_per_s": round(m["candidates"] / cpu_plain, 1),
                "extract_tokenized_trajectories_per_s": round(args.trajectories / cpu_tok, 1),
                "token_exact_fraction": round(
                    m_tok["token_check"]["exact"] / m_tok["token_check"]["checked"], 4
                ),
                "loader_records_per_s": round(n_batches * args.batch_size / cpu_load, 1),
                "loader_batch_size": args.batch_size,
                "loader_max_prompt_len": max_len,
                "record_bytes_mean": round(record_bytes, 1),
                "cpu_share": round(
                    (cpu_plain + cpu_tok + cpu_load) / (wall_plain + wall_tok + wall_load), 3
                ),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
