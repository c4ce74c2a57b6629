"""Throughput of the cheap verifiers: verifications per second on one core.

    python benchmarks/verifiers.py [--n 10000] [--seed 0]

Generates `n` tool-use cases (one to three parallel calls with nested, numeric and free-text
arguments; a third exact copies, a third paraphrased or reordered, a third wrong) and `n` shell
cases, parses them once, then times each verifier over all of them, both bare (`verify`) and
through `run_verifier` (time limit, timing, counting) as profiling calls it. Rates are per
CPU-second of this process (`time.process_time`), so a busy shared machine does not deflate them;
`"cpu_share"` reports the fraction of wall time the process actually ran. Prints one JSON
object: `"<name>_per_s"` through `run_verifier`, `"<name>_bare_per_s"` without it,
`"<name>_mean_reward"` as a sanity check, and `"parse_per_s"` for completion-text parsing.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import time

from pivotrl_jax.rewards import (
    VerifierStats,
    VerifyState,
    alarm_scope,
    build_verifier,
    parse_action,
    parse_completion,
    run_verifier,
)

WORDS = ["cheap", "flights", "hotel", "Oslo", "Paris", "red", "shoes", "size", "running"]
TOOLS = tuple(
    {
        "type": "function",
        "function": {
            "name": name,
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "limit": {"type": "integer"},
                    "price": {"type": "number"},
                    "filters": {"type": "object"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["query"],
            },
        },
    }
    for name in ("search", "book", "lookup")
)


def _arguments(rng: random.Random) -> dict:
    return {
        "query": " ".join(rng.sample(WORDS, rng.randint(1, 6))),
        "limit": rng.randint(1, 50),
        "price": round(rng.uniform(0, 500), 2),
        "filters": {"city": rng.choice(WORDS), "stars": rng.randint(1, 5), "open": True},
        "tags": rng.sample(WORDS, rng.randint(0, 3)),
    }


def _variant(args: dict, rng: random.Random, kind: int) -> dict:
    if kind == 0:
        return json.loads(json.dumps(args))
    if kind == 1:  # reordered keys, shuffled words: still equivalent for multi-word queries
        words = args["query"].split()
        rng.shuffle(words)
        items = list({**args, "query": " ".join(words)}.items())
        rng.shuffle(items)
        return dict(items)
    return {**args, "limit": args["limit"] + 1}


def tool_cases(n: int, rng: random.Random) -> list[tuple]:
    cases = []
    for i in range(n):
        calls = [(rng.choice(("search", "book", "lookup")), _arguments(rng))]
        calls += [
            (rng.choice(("search", "book")), _arguments(rng)) for _ in range(rng.random() < 0.2)
        ]
        expected = [
            {"type": "function_call", "name": name, "arguments": json.dumps(a)} for name, a in calls
        ]
        response = "<think>ok</think>" + "".join(
            "<tool_call>"
            + json.dumps({"name": name, "arguments": _variant(a, rng, i % 3)})
            + "</tool_call>"
            for name, a in reversed(calls)
        )
        cases.append((expected, response))
    return cases


def shell_cases(n: int, rng: random.Random) -> list[tuple]:
    pairs = [
        ("ls -la ./src", "ls -al src/"),
        ("cd /tmp && grep -rn 'TODO' .", "cd /tmp && grep -nr TODO ."),
        ("cat README.md | head -n 20", "head -n 20 README.md"),
        ("rm -rf build", "rm -rf build/"),
        ("python -m pytest -x -q tests", "python -m pytest -q -x tests"),
    ]
    cases = []
    for _ in range(n):
        a, b = rng.choice(pairs)
        call = lambda c: {"type": "function_call", "name": "bash", "arguments": {"command": c}}
        cases.append((call(a), call(b)))
    return cases


def _rate(fn, cases) -> float:
    """Cases per CPU-second of this process (the machine may be shared: wall time would count
    other processes' turns on the core too)."""
    start = time.process_time()
    for expected, action in cases:
        fn(expected, action)
    return len(cases) / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    rng = random.Random(args.seed)
    state = VerifyState(tools=TOOLS)
    raw_tool = tool_cases(args.n, rng)
    start = time.process_time()
    parsed_responses = [parse_completion(r) for _, r in raw_tool]
    parse_rate = args.n / (time.process_time() - start)
    tool = [(parse_action(e), a) for (e, _), a in zip(raw_tool, parsed_responses)]
    shell = [(parse_action(e), parse_action(a)) for e, a in shell_cases(args.n, rng)]

    suites = {
        "tool_call": (tool, {}),
        "tool_call_schema": (
            tool,
            {"validate_schema": True, "coerce_numeric_strings": True, "use_defaults": True},
        ),
        "exact": (tool, {}),
        "normalized": (tool, {}),
        "similarity": (tool, {}),
        "schema": (tool, {}),
        "shell": (shell, {}),
    }
    out: dict[str, float] = {"n": args.n, "parse_per_s": round(parse_rate)}
    wall, cpu = time.perf_counter(), time.process_time()
    with alarm_scope():  # the SIGALRM handler installed once for the whole batch
        for key, (cases, params) in suites.items():
            v = build_verifier("tool_call" if key.startswith("tool_call") else key, **params)
            stats = VerifierStats()
            bare = functools.partial(v.verify, state)
            wrapped = functools.partial(run_verifier, v, state, stats=stats, name=key)
            out[f"{key}_bare_per_s"] = round(_rate(bare, cases))
            out[f"{key}_per_s"] = round(_rate(wrapped, cases))
            summary = stats.summary()
            assert summary["count"] == args.n and "timeout" not in summary["reasons"]
            out[f"{key}_mean_reward"] = round(summary["mean_reward"], 4)
    out["cpu_share"] = round((time.process_time() - cpu) / (time.perf_counter() - wall), 3)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
