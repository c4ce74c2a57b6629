"""Several models measured on the very same items, and compared item by item.

Three measurements, each kept per item so that two models are compared on the same items
(paired intervals, `stats.paired_difference`):

- **turns**: held-out turn acceptance, one greedy action per expert turn of evaluation
  sessions scored by the domain's functional verifier (`turns.turn_rewards`);
- **episodes**: in-domain success of whole episodes on evaluation tasks, per domain;
- **ood**: out-of-domain questions of the kinds the reference model answers reliably (so that a
  loss is visible), chosen once by `ood_kinds` on a separate probe set.

One in-process engine serves every model: `Comparison(first_model_dir)`, then `measure(dir)`
swaps each model's weights in.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from pivotrl_jax.eval.stats import paired_difference, wilson_interval


def sampling(tok: Any, e: Any):
    """Evaluation SamplingParams from a config section (temperature, max_new_tokens, seed)."""
    from pivotrl_jax.rollout.base import SamplingParams

    return SamplingParams(
        temperature=e.temperature,
        max_new_tokens=e.max_new_tokens,
        stop_token_ids=(tok.eos_token_id,),
        seed=e.seed,
    )


OOD_PARTS = ("test", "validation")
VALIDATION_SHARE = 3  # one question in this many (by hash of its text) is a validation question


def ood_part(question: str) -> str:
    """Which part of the out-of-domain question space a question belongs to, by a stable hash of
    its text: "validation" for one question in `VALIDATION_SHARE`, "test" for the rest. Model
    choices (hyperparameters) are made on validation questions, results reported on test ones,
    so no evaluation question ever informs a choice, even in kinds with few questions."""
    digest = hashlib.sha256(question.encode()).digest()
    return "validation" if digest[0] % VALIDATION_SHARE == 0 else "test"


def ood_tasks(
    n: int,
    seed: int,
    kinds: Sequence[str] | None = None,
    exclude: Collection[str] = (),
    part: str | None = None,
) -> list[Any]:
    """Up to `n` evaluation questions with distinct texts, only of `kinds` when given, only of
    `part` ("test" or "validation", `ood_part`) when given, and none whose text is in `exclude`
    (drawn in session order). Some kinds have few distinct questions (one per word of a
    26-word list): when the draw stops finding new ones the list is shorter than `n`, so that no
    question is counted twice as if it were independent evidence."""
    from pivotrl_jax.envs import generate_tasks

    if part is not None and part not in OOD_PARTS:
        raise ValueError(f"ood part {part!r}: expected one of {', '.join(OOD_PARTS)}")
    if kinds is not None and not kinds:
        return []
    out: dict[str, Any] = {}
    want, stalled = max(n, 16), 0
    while len(out) < n and stalled < 3:
        want *= 2
        before = len(out)
        out = {}
        for t in generate_tasks("ood", want, seed=seed, split="eval"):
            if (
                (kinds is None or t.kind in kinds)
                and t.question not in exclude
                and (part is None or ood_part(t.question) == part)
            ):
                out.setdefault(t.question, t)
                if len(out) == n:
                    break
        stalled = stalled + 1 if len(out) == before else 0
    return list(out.values())


def ood_kinds(results: Sequence[Any], tasks: Sequence[Any], min_accuracy: float) -> list[str]:
    """The question kinds answered correctly at least `min_accuracy` of the time."""
    seen, right = Counter(t.kind for t in tasks), Counter()
    for r, t in zip(results, tasks, strict=True):
        right[t.kind] += bool(r.success)
    return sorted(k for k in seen if right[k] / seen[k] >= min_accuracy)


class Comparison:
    """One engine, every model's weights in turn; per-item results for each."""

    def __init__(self, model_dir: str | Path, max_batch_size: int = 64):
        from transformers import AutoTokenizer

        from pivotrl_jax.rollout.jax_engine import JaxEngine, JaxEngineOptions

        self.tok = AutoTokenizer.from_pretrained(str(model_dir))
        self.engine = JaxEngine.from_pretrained(
            model_dir, options=JaxEngineOptions(max_batch_size=max_batch_size, truncation="left")
        )
        self.version = 0

    def load(self, model_dir: str | Path) -> None:
        self.version += 1
        self.engine.update_weights(str(model_dir), self.version)

    def episodes(self, tasks: Sequence[Any], e: Any, max_turns: int, progress: bool, desc: str):
        from pivotrl_jax.eval.episodes import run_episodes
        from pivotrl_jax.eval.policy import EnginePolicy

        policy = EnginePolicy(self.engine, self.tok, sampling(self.tok, e))
        return run_episodes(tasks, policy, max_turns=max_turns, progress=progress, desc=desc)

    def measure(
        self,
        model_dir: str | Path,
        e: Any,
        heldout: Sequence[dict[str, Any]],
        tasks: Mapping[str, Sequence[Any]],
        verifiers: Any,
        progress: bool = True,
    ) -> dict[str, Any]:
        """Per-item results of `model_dir`: `turns` (one reward per held-out candidate),
        `episodes[domain]` and `ood` (one 0/1 per task), `mean_turns` (assistant turns per
        in-domain episode), with the seconds each took."""
        from pivotrl_jax.eval.turns import turn_rewards

        self.load(model_dir)
        out: dict[str, Any] = {"model_dir": str(model_dir), "seconds": {}}
        t0 = time.perf_counter()
        out["turns"] = turn_rewards(
            self.engine, self.tok, heldout, verifiers, e.max_new_tokens, progress=progress
        )
        out["seconds"]["turns"] = time.perf_counter() - t0
        out["episodes"] = {}
        lengths: list[int] = []
        for domain, items in tasks.items():
            t0 = time.perf_counter()
            turns = 1 if domain == "ood" else e.max_turns
            results = self.episodes(items, e, turns, progress, f"eval {domain}")
            wins = [float(r.success) for r in results]
            if domain == "ood":
                out["ood"] = wins
            else:
                out["episodes"][domain] = wins
                lengths += [r.turns for r in results]
            out["seconds"][domain] = time.perf_counter() - t0
        out["mean_turns"] = sum(lengths) / len(lengths) if lengths else 0.0
        return out

    def close(self) -> None:
        self.engine.close()


def _points(d: Mapping[str, Any]) -> dict[str, Any]:
    """A `paired_difference` (fractions) in points."""
    return {"mean": 100 * d["mean"], "ci95": [100 * x for x in d["ci95"]], "n": d["n"]}


def _share(values: Sequence[float]) -> dict[str, Any]:
    """Percent of items passed, with the 95% Wilson interval (in percent)."""
    n = len(values)
    wins = sum(values)
    lo, hi = wilson_interval(round(wins), n)
    return {"mean": 100 * wins / n if n else float("nan"), "n": n, "ci95": [100 * lo, 100 * hi]}


def summarize(results: Mapping[str, Mapping[str, Any]], base: str = "pi_0") -> dict[str, Any]:
    """Per model, the percent of items passed with a 95% interval, and the paired difference
    against `base` on the same items (in points), for turns, episodes and ood."""
    ref = results[base]
    turns: dict[str, Any] = {}
    episodes: dict[str, Any] = {}
    ood: dict[str, Any] = {}
    for name, r in results.items():
        turns[name] = _share(r["turns"])
        episodes[name] = {d: _share(v) for d, v in r["episodes"].items()}
        ood[name] = _share(r.get("ood", []))
        if name != base:
            turns[name]["delta_vs_" + base] = _points(paired_difference(r["turns"], ref["turns"]))
            for d, v in r["episodes"].items():
                delta = paired_difference(v, ref["episodes"][d])
                episodes[name][d]["delta_vs_" + base] = _points(delta)
            if r.get("ood"):
                ood[name]["delta_vs_" + base] = _points(paired_difference(r["ood"], ref["ood"]))
    return {"heldout_turn_acceptance": turns, "episode_success": episodes, "ood_accuracy": ood}


def ood_by_kind(
    results: Mapping[str, Mapping[str, Any]], kinds: Sequence[str], base: str = "pi_0"
) -> dict[str, dict[str, Any]]:
    """Out-of-domain accuracy per question kind: `kinds[i]` is the kind of the i-th question of
    every model's `ood` list; per kind and model the percent right with its 95% interval, and
    for the other models the paired change against `base` on that kind's questions (points)."""
    for name, r in results.items():
        if len(r.get("ood", [])) != len(kinds):
            raise ValueError(f"{name}: {len(r.get('ood', []))} ood results, {len(kinds)} kinds")
    out: dict[str, dict[str, Any]] = {}
    for kind in sorted(set(kinds)):
        idx = [i for i, k in enumerate(kinds) if k == kind]
        ref = [results[base]["ood"][i] for i in idx]
        out[kind] = {}
        for name, r in results.items():
            mine = [r["ood"][i] for i in idx]
            out[kind][name] = _share(mine)
            if name != base:
                out[kind][name]["delta_vs_" + base] = _points(paired_difference(mine, ref))
    return out
