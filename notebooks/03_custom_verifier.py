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
# # A custom verifier: write it, register it, test it, profile with it
#
# A verifier decides whether a sampled action is *functionally* acceptable at a state:
# `verify(state, expected, action) -> VerifyResult(reward, info)`. It is a frozen dataclass
# whose fields are its parameters, registered by name in `VERIFIERS`; records and configs then
# refer to it by that name. This notebook writes one for the terminal domain, checks it against
# hand cases and against the project's `shell` verifier, and profiles candidates with it.

# %%
import collections
import dataclasses
import json
import os
import shlex
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.chdir(Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd())

from pivotrl_jax import cli
from pivotrl_jax.data import records
from pivotrl_jax.envs import generate_sft
from pivotrl_jax.pivots.profile import read_profiled
from pivotrl_jax.rewards.base import VERIFIERS, VerifyState, build_verifier, parse_action, result

work = Path(tempfile.mkdtemp(prefix="pivotrl-verifier-"))

# %% [markdown]
# ## Write it
# `same_flags` credits a `run_command` call that runs the same program with the same operands
# and the same set of flags, whatever their order or grouping: `ls -la docs`, `ls -al docs` and
# `ls -a -l docs` are one action. It is pure and fast (no sandbox), so it suits profiling at
# scale; its blind spots are flags that take values (`find -name x`, `head -n 3`) and pipelines,
# which it reads as one flat command.


# %%
def command_key(command: str) -> tuple:
    """(program, short flags as a set, long flags as a set, operands in order)."""
    program, *words = shlex.split(command)
    short = {c for w in words if w.startswith("-") and not w.startswith("--") for c in w[1:]}
    long = {w for w in words if w.startswith("--")}
    operands = tuple(w for w in words if not w.startswith("-"))
    return program, frozenset(short), frozenset(long), operands


@dataclasses.dataclass(frozen=True)
class SameFlags:
    tool: str = "run_command"  # the tool whose `command` argument is compared

    def verify(self, state, expected, action):
        if action.kind != "tool_calls" or len(action.tool_calls) != 1:
            return result(0.0, "not_one_call")
        call = action.tool_calls[0]
        if call.name != self.tool:
            return result(0.0, "wrong_tool")
        try:
            want = command_key(expected.tool_calls[0].arguments["command"])
            got = command_key(call.arguments["command"])
        except (KeyError, TypeError, ValueError):  # no command, or one shlex cannot split
            return result(0.0, "unparsable")
        return result(float(want == got), "same" if want == got else "different")


if "same_flags" not in VERIFIERS:
    VERIFIERS.register("same_flags", SameFlags)

# %% [markdown]
# ## Test it
# Hand cases first: each line is (expected command, sampled action, reward it must get).


# %%
def call(command, name="run_command"):
    return {"type": "function_call", "name": name, "arguments": json.dumps({"command": command})}


verifier = build_verifier("same_flags")
cases = [
    ("ls -la docs", call("ls -al docs"), 1.0),
    ("ls -la docs", call("ls -a -l docs"), 1.0),
    ("ls -la docs", call("ls -l docs"), 0.0),  # a flag missing
    ("ls -la docs", call("ls -la src"), 0.0),  # another operand
    ("ls -la docs", call("ls -la docs", name="read_file"), 0.0),
    ("ls -la docs", "I would list the folder.", 0.0),  # a message, not a call
    ("ls -la docs", call("ls 'docs"), 0.0),  # unbalanced quote
]
for want, sampled, reward in cases:
    got = verifier.verify(VerifyState(), parse_action(call(want)), parse_action(sampled))
    print(f"{want!r:14} vs {json.dumps(sampled)[:60]:62} reward {got.reward} ({got.reason})")
    assert got.reward == reward

# %% [markdown]
# Then against an independent reference: the project's `shell` verifier replays both commands
# in the simulated terminal rebuilt from the state and compares their effects. On the expert's
# own simple commands (one program, no pipeline, no `find`) with their short flags reordered,
# the two must agree.

# %%
trajectories = generate_sft("terminal", 6, seed=1)
(work / "sft.jsonl").write_text("".join(json.dumps(t) + "\n" for t in trajectories))
argv = ["init-model", "--config=configs/model.py:tiny", "--config.model.num_hidden_layers=1"]
assert cli.main([*argv, "--output", str(work / "base")]) == 0
argv = ["extract", "--input", str(work / "sft.jsonl"), "--output", str(work / "cands")]
argv += ["--tokenizer", str(work / "base"), "--config.verifiers=terminal=same_flags"]
assert cli.main(argv) == 0
cands = list(records.read_records(work / "cands", prefix="candidates"))
shell = build_verifier("shell", sandbox="terminal")
agree = total = 0
for cand in cands:
    expected = parse_action(cand["expected_action"])
    if expected.kind != "tool_calls":
        continue
    command = expected.tool_calls[0].arguments["command"]
    program, *words = shlex.split(command)
    if any(op in command for op in "|;&<>") or program == "find":
        continue  # outside what same_flags understands
    flags = [w for w in words if w.startswith("-") and not w.startswith("--")]
    words = [program, *reversed(flags), *(w for w in words if w not in flags)]
    # Quote only what needs it (an empty or spaced word); `~` stays unquoted, so it expands.
    reordered = " ".join(
        w if w and not any(c.isspace() for c in w) else shlex.quote(w) for w in words
    )
    state = VerifyState(messages=tuple(cand["messages"]), tools=tuple(cand["tools"]))
    mine = verifier.verify(state, expected, parse_action(call(reordered))).reward
    theirs = shell.verify(state, expected, parse_action(call(reordered))).reward
    print(f"{reordered!r:45} same_flags {mine}  shell {theirs}")
    agree, total = agree + (mine == theirs), total + 1
print(f"agreement on {agree} of {total} commands")
assert agree == total > 0

# %% [markdown]
# ## Use it in `profile`
# The candidates were extracted with `--config.verifiers=terminal=same_flags`, so each record
# names it; `pivotrl profile` builds it from the registry for every sample (any other
# verifier's parameters would come from `--config.verifier_params`). A random pi_0 produces no
# valid `run_command` call, so every reward here is 0 and the reasons say why.

# %%
argv = ["profile", f"--config.model_dir={work / 'base'}", "--config.profile.k=4"]
argv += ["--config.profile.max_new_tokens=8", "--noprogress"]
assert cli.main([*argv, "--candidates", str(work / "cands"), "--output", str(work / "prof")]) == 0
profiled = read_profiled(str(work / "prof"))
names = {r["verifier"] for r in profiled}
reasons = collections.Counter(x for r in profiled for x in r["profile"]["verifier_reasons"])
print("verifier per record:", names, "| reasons:", dict(reasons))
assert names == {"same_flags"}
