"""Out-of-domain accuracy with and without a forced lead-in, per model and kind: does a model
still know the answers, or has only its reply's first token moved?

    python benchmarks/ood_lead_in.py                          # runs/demo's pi_0, SFT, PivotRL
    python benchmarks/ood_lead_in.py --config.workdir=runs/demo2
    python benchmarks/ood_lead_in.py --config=configs/demo.py:smoke --config.workdir=DIR

On the demo's evaluation questions (the test part, the kinds pi_0 answers reliably, as the demo
asks them), greedy: `free` is the reply as the demo scores it; `lead_in` puts "The answer is"
after the generation prompt and scores "The answer is" + the continuation, so the answer is no
longer the reply's first token. `lead_in_replies` counts the free replies that start with "The
answer is". Accuracy in percent with 95% intervals, overall ("all") and per kind, and each
model's paired change against pi_0 on the same questions (`eval.compare.ood_by_kind`). A model
whose `free` accuracy falls while its `lead_in` accuracy holds has lost the format (the
distribution of its first token, the position in-domain RL trains), not the facts
(docs/demo.md). Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
LEAD_IN = "The answer is"
MODELS = {"pi_0": "base/model", "sft": "sft_model", "pivotrl": "final"}


def main(argv: list[str]) -> dict:
    from pivotrl_jax.config import load_config
    from pivotrl_jax.envs.ood import OodEnv, score
    from pivotrl_jax.eval import compare
    from pivotrl_jax.rollout.text import chat_prompt_ids, completion_text

    spec = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    overrides = [a[len("--config.") :] for a in argv if a.startswith("--config.")]
    if len(spec) > 1 or len(spec) + len(overrides) != len(argv):
        raise SystemExit(
            "usage: ood_lead_in.py [--config=configs/demo.py[:VARIANT]] [--config.KEY=VALUE ...]"
        )
    c = load_config(spec[0] if spec else str(REPO / "configs/demo.py"), overrides)
    root, e = Path(c.workdir), c.eval
    kinds_file = root / "eval" / "ood_kinds.json"
    if not kinds_file.exists():
        raise SystemExit(f"{kinds_file}: not found; run the demo first (make demo)")
    kinds = json.loads(kinds_file.read_text())
    tasks = compare.ood_tasks(e.ood_questions, e.seed, kinds, part="test")
    if not tasks:
        raise SystemExit(
            f"{kinds_file}: no out-of-domain kind passed the demo's probe; nothing to ask"
        )
    models = {n: root / d for n, d in MODELS.items() if (root / d).exists()}
    cmp = compare.Comparison(models["pi_0"])
    params = compare.sampling(cmp.tok, e)
    lead = cmp.tok.encode(LEAD_IN, add_special_tokens=False)
    prompts = [chat_prompt_ids(cmp.tok, OodEnv(t).initial_messages(), []) for t in tasks]

    def replies(ps: list[list[int]]) -> list[str]:
        groups = cmp.engine.generate(ps, params, 1)
        return [completion_text(cmp.tok, g[0].token_ids, params.stop_token_ids) for g in groups]

    texts: dict[str, dict[str, list[str]]] = {"free": {}, "lead_in": {}}
    try:
        for name, model in models.items():
            cmp.load(model)
            texts["free"][name] = replies(prompts)
            led = replies([p + lead for p in prompts])
            texts["lead_in"][name] = [LEAD_IN + x for x in led]
    finally:
        cmp.close()
    out: dict = {"workdir": str(root), "questions": len(tasks), "kinds": kinds}
    for mode, by_model in texts.items():  # "all" and per kind, each with its paired change
        scores = {m: {"ood": [score(t, x) for t, x in zip(tasks, v)]} for m, v in by_model.items()}
        out[mode] = {
            **compare.ood_by_kind(scores, ["all"] * len(tasks)),
            **compare.ood_by_kind(scores, [t.kind for t in tasks]),
        }
    out["lead_in_replies"] = {
        m: sum(x.startswith(LEAD_IN) for x in v) for m, v in texts["free"].items()
    }
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=1))
