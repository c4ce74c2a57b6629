"""End-to-end RL (train.episodic): episode bookkeeping against independent recomputation, the
task stream, and `pivotrl train ...:episodes` on a tiny model (metrics, resume)."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pivotrl_jax.envs import DOMAINS, generate_tasks
from pivotrl_jax.rollout.base import Completion, SamplingParams
from pivotrl_jax.rollout.text import chat_prompt_ids
from pivotrl_jax.train import episodic


@pytest.fixture(scope="module")
def tok():
    from pivotrl_jax.data.tokenizer import train_tokenizer

    return train_tokenizer([], vocab_size=512, out_dir=None)


class ScriptedEngine:
    """Answers from the prompt text alone: OOD questions right when the prompt's hash is even,
    terminal prompts with `ls` or (one time in three) a final message that ends the episode."""

    def __init__(self, tok, ood_answers):
        self.tok, self.answers = tok, ood_answers

    def generate(self, prompts, params, n):
        out = []
        for p in prompts:
            text = self.tok.decode(p)
            h = zlib.crc32(text.encode()) + (params.seed or 0)
            reply = None
            for q, a in self.answers.items():
                if q in text:
                    reply = a if h % 2 == 0 else "no idea"
            if reply is None:
                reply = (
                    "all done"
                    if h % 3 == 0
                    else '<tool_call>\n{"name": "run_command", "arguments": {"command": "ls"}}'
                    "\n</tool_call>"
                )
            ids = self.tok(reply, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]
            out.append([Completion(tuple(ids), tuple(-0.5 for _ in ids), "stop", 0)] * n)
        return out


def _params(tok, seed=3):
    return SamplingParams(max_new_tokens=32, stop_token_ids=(tok.eos_token_id,), seed=seed)


def test_recorder_keeps_each_episodes_turns_with_their_exact_prompts(tok):
    tasks = generate_tasks("terminal", 5, seed=0, split="train")
    episodes = [t for t in tasks for _ in range(3)]
    results, rec = episodic.recorded_episodes(
        episodes, ScriptedEngine(tok, {}), tok, _params(tok), max_turns=4
    )
    lengths = {r.turns for r in results}
    assert len(lengths) > 1, "the script should end episodes at different turns"
    for res, turns, task in zip(results, rec.turns, episodes, strict=True):
        assert len(turns) == res.turns
        tools = DOMAINS.get("terminal").make_env(task).tools
        # the k-th recorded prompt is the template over the history before the k-th answer
        assistant_at = [i for i, m in enumerate(res.messages) if m["role"] == "assistant"]
        for (prompt, comp), i in zip(turns, assistant_at, strict=True):
            assert prompt == chat_prompt_ids(tok, res.messages[:i], tools)
            assert comp.token_ids[-1] == tok.eos_token_id


def test_advantages_and_sequences_match_an_independent_grpo_computation(tok):
    import jax.numpy as jnp

    from pivotrl_jax.train.advantages import flat_advantages

    tasks = generate_tasks("ood", 6, seed=1, split="train")
    answers = {t.question: t.answer for t in tasks}
    G = 4
    episodes = [t for t in tasks for _ in range(G)]
    engine = ScriptedEngine(tok, answers)
    results, rec = episodic.recorded_episodes(episodes, engine, tok, _params(tok), max_turns=2)
    r = np.asarray([float(x.success) for x in results]).reshape(-1, G)
    assert 0 < r.mean() < 1
    adv = np.asarray(flat_advantages("grpo", jnp.asarray(r.reshape(-1)), G, eps=1e-6, ddof=1))
    # independent: (r - group mean) / (group std with ddof 1 + eps)
    want = (r - r.mean(1, keepdims=True)) / (r.std(1, ddof=1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(adv.reshape(r.shape), want, rtol=1e-5, atol=1e-5)
    keep = np.repeat(r.std(1) > 0, G)
    seqs, dropped = episodic.episode_sequences(rec.turns, adv, keep, max_len=4096)
    assert dropped == 0
    assert len(seqs) == sum(len(rec.turns[e]) for e in np.flatnonzero(keep))
    k = 0
    for e in np.flatnonzero(keep):
        for prompt, comp in rec.turns[e]:
            assert seqs[k].prompt_ids == tuple(prompt)
            assert seqs[k].response_ids == comp.token_ids
            assert seqs[k].advantage == pytest.approx(float(adv[e]))
            k += 1
    # a max_len below a turn's length leaves it out, counted
    shortest = min(len(p) + len(c.token_ids) for t in rec.turns for p, c in t)
    _, dropped = episodic.episode_sequences(rec.turns, adv, keep, max_len=shortest - 1)
    assert dropped == len(seqs)


def test_task_stream_cycles_the_sft_sessions_in_a_seeded_resumable_order():
    stream = episodic.TaskStream(["ood"], per_domain=5, seed=4, batch_size=3)
    sessions = {t.session for t in generate_tasks("ood", 5, 4, "train")}
    first = [t.session for _ in range(4) for t in next(stream)]  # 12 = 2 passes + 2
    assert set(first[:5]) == sessions and set(first[5:10]) == sessions
    state = stream.get_state()
    more = [t.session for t in next(stream)]
    other = episodic.TaskStream(["ood"], per_domain=5, seed=4, batch_size=3)
    other.set_state(state)
    assert [t.session for t in next(other)] == more
    shuffled = episodic.TaskStream(["ood"], per_domain=5, seed=5, batch_size=5)
    assert [t.session for t in next(shuffled)] != first[:5]
    with pytest.raises(ValueError):
        episodic.TaskStream([], per_domain=5, seed=0, batch_size=1)


@pytest.mark.slow
def test_train_episodes_command_runs_and_resumes(tmp_path):
    from pivotrl_jax import cli

    model = tmp_path / "model"
    assert (
        cli.main(
            [
                "init-model",
                "--config=configs/model.py:tiny",
                "--config.model.num_hidden_layers=1",
                "--config.tokenizer.vocab_size=400",
                "--output",
                str(model),
            ]
        )
        == 0
    )
    run = tmp_path / "run"
    args = [
        "train",
        "--config=configs/train.py:tiny,envs,episodes",
        f"--config.model_dir={model}",
        "--config.episodes.domains=('ood',)",
        "--config.episodes.tasks_per_domain=8",
        "--config.episodes.max_turns=2",
        "--config.train.pivots_per_step=2",
        "--config.train.drop_zero_variance=False",
        "--config.rollout.group_size=2",
        "--config.rollout.max_new_tokens=8",
        "--config.checkpoint.every=1",
        "--config.log.progress=False",
        "--output",
        str(run),
    ]
    assert cli.main([*args, "--config.train.steps=1"]) == 0
    assert cli.main([*args, "--config.train.steps=2"]) == 0
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        # OOD episodes last one turn: 2 tasks x 2 episodes = 4 turns per iteration
        assert r["rollout/turns"] == 4.0
        assert r["update/tokens"] > 0 and np.isfinite(r["loss"])
    state = json.loads((run / "config.json").read_text())["config"]
    assert state["episodes"]["domains"] == ["ood"]
    assert Path(run / "checkpoints").exists()
