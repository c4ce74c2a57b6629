"""The demo's GRPO step on a fixed stream of rollout batches, here and on another revision.

    python benchmarks/demo_step.py                         # this checkout
    python benchmarks/demo_step.py --baseline dc272c6      # ... and that revision, same command

The step is what `pivotrl train` does with one rollout batch once the rewards are in (batch
assembly, the log-prob passes the update needs, the update, the weight sync), with the settings
`pivotrl demo` trains with (configs/demo.py and configs/train.py defaults: 8 pivots x 8 samples
of <= 48 new tokens, prompts of 226-488 tokens that open with the same 165-token preamble, two
micro-batches, lr 1e-4, beta 0, the KL metric on), its policy's shape (4-layer Qwen3-MoE,
hidden 64, 8 experts top-2, vocab 1024) and the engine's log-probs at the uniform -ln V of a
fresh model. Groups with equal rewards are dropped, as in training.

The batches go through twice: `step_s_median` is the median step of the second pass, when
every shape is compiled; `first_pass_s` sums the first pass, compiles included. `--baseline
REV` runs the same batches through `git archive REV` of this repository in a subprocess and
reports both, with the largest per-step loss and final parameter differences (equal results).
Prints one JSON object; seconds are wall clock (the machine may be shared: compare only numbers
from one command).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _tiny_moe() -> dict:
    """configs/model.py's `tiny-moe` variant at the tokenizer's 1024 entries."""
    spec = importlib.util.spec_from_file_location("model_config", REPO / "configs" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.VARIANTS["tiny-moe"], vocab_size=1024, max_position_embeddings=4096)


MODEL = _tiny_moe()
PIVOTS, GROUP, NEW_TOKENS, MAX_PROMPT, PREAMBLE = 8, 8, 48, 768, 165


def rollout_batches(steps: int, seed: int) -> list[list[tuple]]:
    """Per step, the kept samples as (prompt, response, logprobs, advantage) tuples."""
    rng = np.random.default_rng(seed)
    V = MODEL["vocab_size"]
    preamble = tuple(int(x) for x in rng.integers(3, V, PREAMBLE))
    out = []
    for _ in range(steps):
        batch = []
        for _ in range(PIVOTS):
            n = int(rng.integers(226, 489)) - PREAMBLE
            prompt = preamble + tuple(int(x) for x in rng.integers(3, V, n))
            rewards = (rng.random(GROUP) < rng.random()).astype(np.float64)
            if rewards.std() == 0:  # a zero-variance group: dropped
                continue
            adv = (rewards - rewards.mean()) / (rewards.std(ddof=1) + 1e-6)
            for g in range(GROUP):
                k = int(rng.integers(4, NEW_TOKENS + 1))
                resp = tuple(int(x) for x in rng.integers(3, V, k))
                batch.append((prompt, resp, (-float(np.log(V)),) * k, float(adv[g])))
        out.append(batch)
    return out


class _Engine:
    """The in-process engine's weight-sync end, without sampling (rollouts are given)."""

    def update_weights(self, state, version):
        del state, version


def measure(steps: int, seed: int, params_out: str) -> dict:
    """Run the batches through this interpreter's `pivotrl_jax`; per-step seconds and metrics."""
    import jax
    from flax import nnx

    from pivotrl_jax.models.config import ModelConfig
    from pivotrl_jax.models.sharding import single_device_mesh
    from pivotrl_jax.models.transformer import Transformer
    from pivotrl_jax.train import metrics as metrics_lib
    from pivotrl_jax.train.batching import Sequence
    from pivotrl_jax.train.losses import LossConfig
    from pivotrl_jax.train.optim import OptimConfig
    from pivotrl_jax.train.step import StepConfig

    try:  # train/loop.py in modules of one concept each
        from pivotrl_jax.train.grpo_config import GrpoConfig, RolloutConfig
        from pivotrl_jax.train.parts import build_parts
        from pivotrl_jax.train.update import update_on
    except ImportError:  # one loop module
        from pivotrl_jax.train.loop import GrpoConfig, RolloutConfig, build_parts, update_on

    config = ModelConfig(**MODEL)
    params = nnx.to_pure_dict(nnx.state(Transformer(config, rngs=nnx.Rngs(0)), nnx.Param))
    cfg = GrpoConfig(
        model_dir="",
        pivots="",
        pivots_per_step=PIVOTS,
        max_prompt_len=MAX_PROMPT,
        tensorboard=False,
        progress=False,
        rollout=RolloutConfig(group_size=GROUP, max_new_tokens=NEW_TOKENS),
        loss=LossConfig(beta=0.0),
        optim=OptimConfig(learning_rate=1e-4),
        step=StepConfig(micro_batches=2, entropy_metric=True),
    )
    mesh = single_device_mesh()
    parts = build_parts(cfg, mesh, _Engine(), str, (), None, None, params, config)
    rows = []
    batches = rollout_batches(steps, seed)
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for it in range(2 * steps):  # the second pass meets only compiled shapes
            seqs = [Sequence(*s) for s in batches[it % steps]]
            out, _ = update_on(
                parts, seqs, it, Path(tmp), metrics_lib.StepTimer(), {}, PIVOTS * GROUP
            )
            rows.append(
                {
                    k: out.get(k)
                    for k in (
                        "time/reference",
                        "time/update",
                        "time/sync",
                        "loss",
                        "grad_norm",
                        "kl/mean",
                        "entropy/mean",
                        "update/tokens",
                    )
                }
            )
    total = time.perf_counter() - wall
    leaves = [np.asarray(x) for x in jax.tree.leaves(parts.state.params)]
    np.savez(params_out, *leaves)
    steps_s = [r["time/reference"] + r["time/update"] for r in rows]
    return {
        "step_s_median": statistics.median(steps_s[steps:]),
        "step_s_all": steps_s,
        "first_pass_s": sum(steps_s[:steps]),
        "total_s": total,
        "steps": rows,
    }


def run_revision(rev: str | None, steps: int, seed: int, params_out: str) -> dict:
    """`measure` in a subprocess on this checkout (rev None) or a `git archive` of `rev`."""
    with tempfile.TemporaryDirectory() as tmp:
        src = REPO
        if rev is not None:
            archive = subprocess.run(
                ["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            src = Path(tmp)
        env = dict(os.environ, PYTHONPATH=str(src))
        cmd = [sys.executable, __file__, "--measure", params_out, "--steps", str(steps)]
        cmd += ["--seed", str(seed)]
        done = subprocess.run(cmd, env=env, cwd=src, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{rev or 'this checkout'} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
    result["revision"] = rev or "this checkout"
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default=None, help="a git revision to measure as well")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        print(json.dumps(measure(args.steps, args.seed, args.measure)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for name, rev in (("baseline", args.baseline), ("this", None)):
            if name == "baseline" and rev is None:
                continue
            runs[name] = run_revision(rev, args.steps, args.seed, f"{tmp}/{name}.npz")
        out = {"this": runs["this"]}
        if "baseline" in runs:
            base, this = runs["baseline"], runs["this"]
            a, b = np.load(f"{tmp}/baseline.npz"), np.load(f"{tmp}/this.npz")
            out["baseline"] = base
            out["speedup_step_median"] = base["step_s_median"] / this["step_s_median"]
            out["speedup_first_pass"] = base["first_pass_s"] / this["first_pass_s"]
            out["max_abs_param_diff"] = max(float(np.max(np.abs(a[k] - b[k]))) for k in a.files)
            out["max_abs_loss_diff"] = max(
                abs(x["loss"] - y["loss"]) for x, y in zip(base["steps"], this["steps"])
            )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
