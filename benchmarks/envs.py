"""Sizes of the synthetic domains' trajectories, in messages and in tokens, and how fast the
experts write them.

    python benchmarks/envs.py [--trajectories 300] [--seed 1]

For each domain: expert trajectories per second (wall clock; varies with load), assistant turns
and tool calls per trajectory, JSON characters, and tokens under the demo's tokenizer (trained
as `pivotrl demo` trains it: rendered trajectories of every domain, the chat template's fixed
text and the tool specs as one token each): whole rendered trajectories, the fixed preamble
(system prompt and tool specs) and the prompt of each candidate turn. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pivotrl_jax.data.tokenizer import phrase_tokens, train_tokenizer
from pivotrl_jax.envs import generate_sft

DOMAINS = ("terminal", "tool_use", "ood")


def _ids(tok, messages, tools) -> list[int]:
    out = tok.apply_chat_template(
        messages, tools=tools or None, tokenize=True, add_generation_prompt=False
    )
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def _spread(values: list[float]) -> dict:
    return {
        "mean": round(statistics.fmean(values), 2),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trajectories", type=int, default=300, help="per domain")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    rows, rate = {}, {}
    for domain in DOMAINS:
        t0 = time.perf_counter()
        rows[domain] = generate_sft(domain, args.trajectories, seed=args.seed)
        rate[domain] = args.trajectories / (time.perf_counter() - t0)

    render = train_tokenizer((), vocab_size=512)  # only its chat template is used here
    texts = [
        render.apply_chat_template(r["messages"], tools=r.get("tools") or None, tokenize=False)
        for d in DOMAINS
        for r in rows[d]
    ]
    tools = sorted(
        {
            json.dumps(t, ensure_ascii=False)
            for d in DOMAINS
            for r in rows[d]
            for t in r.get("tools") or []
        }
    )
    tok = train_tokenizer(texts, vocab_size=1024, phrases=phrase_tokens(tools))

    out: dict = {"trajectories_per_domain": args.trajectories, "vocab_size": len(tok)}
    for domain in DOMAINS:
        rs = rows[domain]
        turns, calls, chars, total, preamble, prompts = [], [], [], [], [], []
        for r in rs:
            msgs, tl = r["messages"], r.get("tools")
            assistant = [k for k, m in enumerate(msgs) if m["role"] == "assistant"]
            turns.append(len(assistant))
            calls.append(sum(len(msgs[k].get("tool_calls") or []) for k in assistant))
            chars.append(len(json.dumps(r, ensure_ascii=False)))
            total.append(len(_ids(tok, msgs, tl)))
            fixed = [m for m in msgs[:1] if m["role"] == "system"]
            preamble.append(len(_ids(tok, fixed, tl)) if fixed or tl else 0)
            prompts += [len(_ids(tok, msgs[:k], tl)) for k in assistant]
        out[domain] = {
            "trajectories_per_s": round(rate[domain], 1),
            "assistant_turns": _spread(turns),
            "tool_calls": _spread(calls),
            "json_chars": _spread(chars),
            "tokens": _spread(total),
            "preamble_tokens": _spread(preamble),
            "candidate_prompt_tokens": _spread(prompts),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
