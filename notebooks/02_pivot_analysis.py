# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Pivot analysis: which turns carry a learning signal
#
# PivotRL profiles every candidate turn under the frozen pi_0: K sampled actions, each scored by
# a functional verifier, give the mean mu(s) and the variance sigma^2(s) of the reward. GRPO
# learns only from groups whose rewards differ, so a turn with sigma^2(s) = 0 (always solved or
# never solved) teaches nothing; the paper found about 71% of random turns in that state.
#
# This notebook profiles the candidates of a few synthetic trajectories (tool use and terminal)
# under a tiny random pi_0 with the in-process JAX engine, then reads the profiled records:
# mean and variance plots, the zero-signal fraction, and examples of pivots and dropped turns.
# A random pi_0 is the extreme case: almost nothing it does is right.

# %%
import collections
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.chdir(Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd())

import matplotlib.pyplot as plt
import numpy as np

from pivotrl_jax import cli
from pivotrl_jax.commands.select import to_row
from pivotrl_jax.envs import generate_sft
from pivotrl_jax.pivots.profile import read_profiled
from pivotrl_jax.pivots.select import SelectConfig, drop_reason, select

# %matplotlib inline
work = Path(tempfile.mkdtemp(prefix="pivotrl-pivots-"))

# %% [markdown]
# ## Profile the candidates under pi_0
# `init-model` writes a random one-layer model and its tokenizer; `extract` turns every
# assistant turn of the trajectories into a candidate; `profile` samples K = 12 actions per
# candidate and scores them with the `tool_call` verifier (the public reference's single-step
# comparison: a call must match the expected call's name and arguments; when the expected turn is
# a message, any message is accepted).

# %%
rows = generate_sft("tool_use", 3, seed=0) + generate_sft("terminal", 3, seed=0)
(work / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
base = str(work / "base")
init = ["init-model", "--config=configs/model.py:tiny", "--config.model.num_hidden_layers=1"]
extract = ["extract", "--input", str(work / "sft.jsonl"), "--tokenizer", base]
verifiers = "--config.verifiers=terminal=tool_call,tool_use=tool_call"
profile = ["profile", f"--config.model_dir={base}"]
sampling = ["--config.profile.k=12", "--config.profile.max_new_tokens=16", "--noprogress"]
for argv in (
    [*init, "--output", base],
    [*extract, verifiers, "--output", str(work / "cands")],
    [*profile, *sampling, "--candidates", str(work / "cands"), "--output", str(work / "profiled")],
):
    assert cli.main(argv) == 0, argv
profiled = read_profiled(str(work / "profiled"))
print(len(profiled), "profiled candidates")

# %% [markdown]
# ## Mean and variance
# With 0/1 rewards the variance is tied to the mean, sigma^2 = mu (1 - mu) (the curve): it peaks
# at mu = 1/2, where Theorem 3.2 of the paper puts the largest natural-gradient signal. Points on
# the axis at mu = 0 and mu = 1 are the zero-signal turns.

# %%
mean = np.array([r["profile"]["mean"] for r in profiled])
var = np.array([r["profile"]["variance"] for r in profiled])
domain = np.array([r["domain"] for r in profiled])
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
left.hist(mean, bins=12, range=(0, 1), color="#4c72b0", edgecolor="white")
left.set(xlabel="mu(s) under pi_0", ylabel="candidates", title="mean reward")
grid = np.linspace(0, 1, 101)
right.plot(grid, grid * (1 - grid), color="grey", lw=1, label="mu (1 - mu)")
for d, colour in (("tool_use", "#4c72b0"), ("terminal", "#dd8452")):
    jitter = np.random.default_rng(0).uniform(-0.01, 0.01, (domain == d).sum())
    right.scatter(mean[domain == d] + jitter, var[domain == d], s=18, color=colour, label=d)
right.set(xlabel="mu(s)", ylabel="sigma^2(s)", title="variance against mean")
right.legend()
fig.tight_layout()
plt.show()
assert np.allclose(var, mean * (1 - mean))  # binary rewards: the curve exactly

# %% [markdown]
# ## How much carries no signal
# The fraction of candidates whose K rewards are all equal, per domain.

# %%
for d in sorted(set(domain)):
    zero = float(np.mean(var[domain == d] == 0))
    print(f"{d:9} {int((domain == d).sum()):3} candidates, zero-signal fraction {zero:.2f}")
print(f"all       {len(profiled):3} candidates, zero-signal fraction {np.mean(var == 0):.2f}")

# %% [markdown]
# ## Pivots and dropped turns
# The selection rule keeps sigma^2(s) > 0 and mu(s) < lambda_diff. At the tool-use recipe's
# lambda_diff = 0.6 this pi_0's mixed turns are all too easy (the random model "succeeds" only
# where any message is accepted), so the examples below use lambda_diff = 1.01, which keeps every
# turn with mixed outcomes.

# %%
select_rows = [to_row(r) for r in profiled]
for lam in (0.6, 1.01):
    report = select(select_rows, SelectConfig(lambda_diff=lam)).report
    print(f"lambda_diff {lam}: kept {report['kept']} of {report['candidates']},", report["dropped"])
reasons = [drop_reason(row, SelectConfig(lambda_diff=1.01)) or "pivot" for row in select_rows]
print(collections.Counter(reasons))


def show(record, reason):
    p = record["profile"]
    last_user = next(m for m in reversed(record["messages"]) if m["role"] == "user")
    print(f"[{reason}] {record['id']}  mu={p['mean']:.2f}  sigma^2={p['variance']:.3f}")
    print("  last user turn:", str(last_user["content"])[:90])
    print("  expected      :", json.dumps(record["expected_action"])[:90])
    print("  verifier said :", dict(collections.Counter(p["verifier_reasons"])))


for wanted in ("pivot", "zero_variance"):
    examples = [r for r, why in zip(profiled, reasons) if why == wanted]
    for record in sorted(examples, key=lambda r: r["profile"]["mean"])[:2]:
        show(record, wanted)

# %% [markdown]
# The pivots are turns where pi_0 sometimes answers acceptably and sometimes not (here: a reply
# that should be a message, which the random model sometimes leaves empty or starts as a tool
# call); the dropped turns are those it never gets right (it cannot yet produce a tool call) or
# always does. A better pi_0 (an SFT checkpoint) moves many turns into
# the middle; `pivotrl select` then keeps the hard-but-possible ones.
