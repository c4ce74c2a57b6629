"""Reward statistics and pivot filters on hand-built reward tables."""

import numpy as np
import pytest

from pivotrl_jax.pivots.select import SelectConfig, SelectRow, drop_reason, select
from pivotrl_jax.pivots.stats import reward_stats


def test_reward_stats_hand_values():
    rewards = np.array(
        [
            [1, 0, 0, 1],  # mean 0.5, var = 4 * 0.25 / 4 = 0.25
            [1, 1, 1, 1],  # all equal: var 0
            [0, 0, 0, 1],  # mean 0.25, var = (3 * 0.0625 + 0.5625) / 4 = 0.1875
            [0.5, 0.5, 0.5, 0.5],
        ]
    )
    mean, var = reward_stats(rewards)
    np.testing.assert_array_equal(mean, [0.5, 1.0, 0.25, 0.5])
    np.testing.assert_array_equal(var, [0.25, 0.0, 0.1875, 0.0])


def test_reward_stats_k1_and_round_off():
    _, var = reward_stats(np.array([[1.0], [0.0]]))
    np.testing.assert_array_equal(var, [0.0, 0.0])
    # 0.1 is not exact in binary; all-equal rows must still give exactly 0, never negative.
    _, var = reward_stats(np.full((3, 7), 0.1))
    assert np.all(var == 0.0)
    _, var = reward_stats(np.array([[0.1, 0.1 + 1e-17, 0.1]]))
    assert var[0] >= 0.0 and not np.isnan(var[0])


def test_reward_stats_matches_numpy_var():
    rng = np.random.default_rng(0)
    r = rng.integers(0, 2, size=(50, 16)).astype(float)
    mean, var = reward_stats(r)
    np.testing.assert_allclose(var, r.var(axis=1, ddof=0), atol=1e-15)
    np.testing.assert_allclose(mean, r.mean(axis=1))


def test_reward_stats_rejects_bad_input():
    with pytest.raises(ValueError, match="finite"):
        reward_stats(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="shape"):
        reward_stats(np.array([1.0, 0.0]))


def row(i, mean, var, kind="tool_call", traj=None, domain="d"):
    return SelectRow(
        f"t{traj if traj is not None else i}:{i}", f"t{traj or i}", domain, kind, mean, var
    )


def test_filter_bounds_strict_and_inclusive():
    cfg = SelectConfig(lambda_diff=0.5)
    assert drop_reason(row(0, 0.5, 0.25), cfg) == "too_easy"  # strict: mu < lambda
    assert drop_reason(row(0, 0.49, 0.2), cfg) is None
    assert drop_reason(row(0, 0.0, 0.0), cfg) == "zero_variance"
    assert drop_reason(row(0, 1.0, 0.0), cfg) == "zero_variance"
    assert drop_reason(row(0, 0.5, 0.25), SelectConfig(lambda_diff=0.5, inclusive=True)) is None


def test_select_counts_budget_and_split():
    rows = [row(i, mean=i / 20, var=0.1) for i in range(12)]  # means 0.0 .. 0.55
    rows += [row(100, 0.25, 0.0), row(101, 0.9, 0.09)]
    sel = select(rows, SelectConfig(lambda_diff=0.5, budget=5))
    # 10 pass the filter (means 0.0..0.45); the budget keeps the 5 hardest (means 0.0..0.2).
    kept = sorted(sel.train + sel.validation)
    assert kept == sorted(f"t{i}:{i}" for i in range(5))
    assert sel.report["dropped"] == {
        "zero_variance": 1,
        "too_easy": 3,  # means 0.5, 0.55 and 0.9
        "message_downsampled": 0,
        "over_budget": 5,
    }
    assert sel.report["kept"] == 5 and sel.report["candidates"] == 14


def test_split_is_by_trajectory():
    # 40 trajectories with 5 turns each.
    rows = [row(10 * t + k, 0.3, 0.2, traj=t) for t in range(40) for k in range(5)]
    sel = select(rows, SelectConfig(val_fraction=0.3, seed=1))
    traj_of = {r.id: r.trajectory_id for r in rows}
    train_t = {traj_of[i] for i in sel.train}
    val_t = {traj_of[i] for i in sel.validation}
    assert not train_t & val_t
    assert len(sel.train) + len(sel.validation) == 200
    assert 0 < len(val_t) < 40 and len(sel.validation) == 5 * len(val_t)
    again = select(list(reversed(rows)), SelectConfig(val_fraction=0.3, seed=1))
    assert set(again.validation) == set(sel.validation)


def test_message_downsampling_fraction():
    rows = [row(i, 0.3, 0.2, kind="message") for i in range(2000)]
    rows += [row(5000 + i, 0.3, 0.2) for i in range(100)]
    sel = select(rows, SelectConfig(message_fraction=0.25))
    n_msg = sum(1 for i in sel.train if int(i.split(":")[1]) < 5000)
    assert 400 < n_msg < 600  # binomial(2000, 0.25): mean 500, sd ~19
    assert sel.report["dropped"]["message_downsampled"] == 2000 - n_msg
    assert sum(1 for i in sel.train if int(i.split(":")[1]) >= 5000) == 100
