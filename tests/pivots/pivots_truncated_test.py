"""A completion cut at max_new_tokens is a turn that never ended: it earns 0 in profiling (and so
in held-out evaluation) and in GRPO, without being verified, unless `score_truncated`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pivotrl_jax.pivots.profile import TRUNCATED, ProfileConfig, profile_chunk
from pivotrl_jax.rollout.base import Completion
from pivotrl_jax.train.groups import score_groups


@dataclass
class _Result:
    reward: float
    reason: str


class _Scorer:
    """Rewards every text 1.0 and remembers what it was asked to verify."""

    def __init__(self):
        self.seen: list[str] = []

    def score(self, record, text, time_limit_s):
        self.seen.append(text)
        return _Result(1.0, "ok")


class _Engine:
    """Sample j of every prompt ends with `finish[j]`."""

    def __init__(self, finish):
        self.finish = finish

    def generate(self, prompt_ids, params, n):
        return [
            [Completion([5, 6], [0.0, 0.0], self.finish[j], 0) for j in range(n)]
            for _ in prompt_ids
        ]


FINISH = ["stop", "length", "stop", "length"]


def test_profile_gives_truncated_completions_zero_without_verifying():
    cands = [{"id": "a", "prompt_ids": [1, 2]}, {"id": "b", "prompt_ids": [3]}]
    scorer = _Scorer()
    cfg = ProfileConfig(k=4, max_new_tokens=2, candidates_per_call=2)
    recs, _ = profile_chunk(cands, _Engine(FINISH), lambda ids: "text", scorer, cfg, 0)
    for r in recs:
        assert r["profile"]["rewards"] == [1.0, 0.0, 1.0, 0.0]
        assert r["profile"]["verifier_reasons"] == ["ok", TRUNCATED, "ok", TRUNCATED]
        assert r["profile"]["mean"] == 0.5
    assert len(scorer.seen) == 4  # only the two finished samples of each candidate
    scorer = _Scorer()
    cfg = ProfileConfig(k=4, max_new_tokens=2, candidates_per_call=2, score_truncated=True)
    recs, _ = profile_chunk(cands, _Engine(FINISH), lambda ids: "text", scorer, cfg, 0)
    assert recs[0]["profile"]["rewards"] == [1.0] * 4 and len(scorer.seen) == 8


def test_grpo_gives_truncated_completions_zero_without_verifying():
    groups = _Engine(FINISH).generate([[1], [2]], None, 4)
    records = [{"id": "a"}, {"id": "b"}]
    scorer = _Scorer()
    rewards, errors = score_groups(records, groups, lambda ids: "t", scorer, "", 1.0)
    np.testing.assert_array_equal(rewards, [[1, 0, 1, 0], [1, 0, 1, 0]])
    assert not errors.any() and len(scorer.seen) == 4
    scorer = _Scorer()
    rewards, _ = score_groups(records, groups, lambda ids: "t", scorer, "", 1.0, True)
    assert rewards.sum() == 8 and len(scorer.seen) == 8
