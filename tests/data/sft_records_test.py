"""Whole-trajectory SFT records: the masked tokens are exactly the per-turn completions, and the
NLL summed over the mask equals the per-turn candidates' NLL sums under a real model."""

import json
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pivotrl_jax import cli
from pivotrl_jax.data import records
from pivotrl_jax.data.sft_records import trajectory_records
from pivotrl_jax.envs import generate_sft


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("sftrec")
    assert (
        cli.main(
            [
                "init-model",
                "--config=configs/model.py:tiny",
                "--output",
                str(d / "m"),
                "--config.model.num_hidden_layers=1",
                "--config.tokenizer.vocab_size=400",
            ]
        )
        == 0
    )
    rows = generate_sft("terminal", 2, seed=3) + generate_sft("tool_use", 1, seed=3)
    (d / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert (
        cli.main(
            [
                "extract",
                "--input",
                str(d / "sft.jsonl"),
                "--output",
                str(d / "c"),
                "--tokenizer",
                str(d / "m"),
            ]
        )
        == 0
    )
    return d, rows


def test_mask_covers_exactly_the_turn_completions(setup):
    from transformers import AutoTokenizer

    d, rows = setup
    tok = AutoTokenizer.from_pretrained(d / "m")
    recs, counts = trajectory_records(tok, rows)
    assert counts == {"kept": 3, "skipped": 0, "unsupervised_turns": 0}
    cands = list(records.read_records(d / "c", prefix="candidates"))
    for rec in recs:
        mine = sorted(
            (c for c in cands if c["trajectory_id"] == rec["trajectory_id"]),
            key=lambda c: c["turn_index"],
        )
        masked = [t for t, m in zip(rec["completion_ids"], rec["completion_mask"]) if m]
        assert masked == [t for c in mine for t in c["completion_ids"]]
        full = list(rec["prompt_ids"]) + list(rec["completion_ids"])
        for c in mine:  # each candidate's prompt + completion is a prefix of the trajectory
            n = len(c["prompt_ids"]) + len(c["completion_ids"])
            assert full[:n] == list(c["prompt_ids"]) + list(c["completion_ids"])


def test_trajectory_nll_equals_sum_of_turn_nlls(setup):
    from transformers import AutoTokenizer

    from pivotrl_jax.models import load_model

    d, rows = setup
    tok = AutoTokenizer.from_pretrained(d / "m")
    model, _ = load_model(d / "m")
    recs, _ = trajectory_records(tok, rows)
    cands = list(records.read_records(d / "c", prefix="candidates"))

    turns = [c for c in cands if any(c["trajectory_id"] == r["trajectory_id"] for r in recs)]
    seqs = [list(r["prompt_ids"]) + list(r["completion_ids"]) for r in recs]
    seqs += [list(c["prompt_ids"]) + list(c["completion_ids"]) for c in turns]
    # One causal forward over every sequence, right-padded: a token's logits see only the tokens
    # before it, so the padding changes nothing that is read.
    width = max(map(len, seqs))
    x = np.zeros((len(seqs), width), np.int32)
    for i, ids in enumerate(seqs):
        x[i, : len(ids)] = ids
    positions = np.broadcast_to(np.arange(width, dtype=np.int32), x.shape)
    all_logits = np.asarray(model(x, positions, np.ones_like(x))[0], np.float64)  # [N, W, V]

    def logprobs(i):
        ids, logits = seqs[i], all_logits[i, : len(seqs[i])]
        lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
        return logits[np.arange(len(ids) - 1), ids[1:]] - lse[:-1]  # [T-1]: log p(t+1 | <=t)

    for r, rec in enumerate(recs):
        lp = logprobs(r)
        mask = np.asarray([0.0] * len(rec["prompt_ids"]) + list(rec["completion_mask"]))[1:]
        traj_nll = -(lp * mask).sum()
        turn_nll = 0.0
        for j, c in enumerate(turns):
            if c["trajectory_id"] == rec["trajectory_id"]:
                turn_nll += -logprobs(len(recs) + j)[len(c["prompt_ids"]) - 1 :].sum()
        assert turn_nll > 0
        assert traj_nll == pytest.approx(turn_nll, rel=1e-5)
