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
# # pivotrl-jax quickstart: from SFT trajectories to pivots
#
# This notebook walks the first half of PivotRL on CPU in a few minutes:
# a tiny random Qwen3-MoE with the project tokenizer, SFT trajectories from the synthetic
# terminal domain, candidate extraction, a functional verifier, profiling under pi_0 with the
# in-process JAX engine, and pivot selection. `pivotrl demo` runs the whole pipeline,
# including GRPO and evaluation.

# %%
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.chdir(Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd())

from pivotrl_jax import cli
from pivotrl_jax.data import records
from pivotrl_jax.envs import generate_sft
from pivotrl_jax.rewards.base import VerifyState, build_verifier, parse_action

work = Path(tempfile.mkdtemp(prefix="pivotrl-quickstart-"))

# %% [markdown]
# ## A base policy pi_0
# `init-model` trains the byte-level BPE tokenizer on the shipped corpus and writes a random
# model in Hugging Face layout (transformers and SGLang load it as is).

# %%
assert (
    cli.main(
        [
            "init-model",
            "--config=configs/model.py:tiny-moe",
            "--config.model.num_hidden_layers=2",
            "--output",
            str(work / "base"),
        ]
    )
    == 0
)
print(json.loads((work / "base" / "config.json").read_text())["architectures"])

# %% [markdown]
# ## SFT trajectories and candidates
# Every assistant turn becomes a candidate whose state is the history before it; prompts are
# rendered with the model's own chat template, and token exactness is checked.

# %%
rows = generate_sft("terminal", 4, seed=0)
(work / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
assert (
    cli.main(
        [
            "extract",
            "--input",
            str(work / "sft.jsonl"),
            "--output",
            str(work / "cands"),
            "--tokenizer",
            str(work / "base"),
            "--config.verifiers=terminal=shell",
        ]
    )
    == 0
)
cands = list(records.read_records(work / "cands", prefix="candidates"))
print(len(cands), "candidates; first expected action:", cands[0]["expected_action"])

# %% [markdown]
# ## Functional reward
# The shell verifier replays both commands in the simulated terminal rebuilt from the state:
# a different spelling with the same effect earns reward 1.

# %%
shell = build_verifier("shell", sandbox="terminal")
state = VerifyState(messages=tuple(cands[0]["messages"]), tools=tuple(cands[0]["tools"]))
expected = parse_action(cands[0]["expected_action"])
command = expected.tool_calls[0].arguments["command"]
alternative = command.replace("ls ", "ls ./", 1) if command.startswith("ls ") else command
for text in (command, alternative, "rm -rf /"):
    call = {
        "type": "function_call",
        "name": "run_command",
        "arguments": json.dumps({"command": text}),
    }
    print(f"{text!r:40} reward", shell.verify(state, expected, parse_action(call)).reward)

# %% [markdown]
# ## Profile under pi_0, then select pivots
# K samples per candidate from the frozen pi_0; pivots are the turns with mixed outcomes.
# A random model rarely succeeds, so this cell keeps everything that varies at all.

# %%
assert (
    cli.main(
        [
            "profile",
            "--config=configs/profile.py:envs",
            "--candidates",
            str(work / "cands"),
            "--output",
            str(work / "profiled"),
            f"--config.model_dir={work / 'base'}",
            "--config.profile.k=4",
            "--config.profile.max_new_tokens=8",
            "--noprogress",
        ]
    )
    == 0
)
assert (
    cli.main(
        [
            "select",
            "--profiled",
            str(work / "profiled"),
            "--output",
            str(work / "pivots"),
            "--config.select.lambda_diff=1.01",
        ]
    )
    == 0
)
print(json.loads((work / "pivots" / "select_report.json").read_text())["dropped"])
