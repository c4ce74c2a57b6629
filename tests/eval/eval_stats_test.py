"""The evaluation's intervals against scipy."""

import numpy as np
import pytest
from scipy import stats

from pivotrl_jax.eval.stats import mean_ci, paired_difference, t975, wilson_interval


@pytest.mark.parametrize("values", [[0.1, 0.3, 0.2], [0.5, 0.52], [0.0, 0.1, 0.4, 0.2, 0.9]])
def test_mean_ci_is_the_student_t_interval(values):
    got = mean_ci(values)
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert got["mean"] == pytest.approx(np.mean(values))
    assert got["ci95"] == pytest.approx((hi - lo) / 2, rel=1e-3)
    assert mean_ci([0.4]) == {"mean": 0.4, "ci95": 0.0, "n": 1}


@pytest.mark.parametrize("df", [1, 2, 5, 10, 11, 30, 200, 5000])
def test_t_quantile(df):
    assert t975(df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-3)


def test_paired_difference_is_the_paired_t_interval():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2, 1200).astype(float)
    treated = np.where(rng.random(1200) < 0.2, 1.0, base)
    got = paired_difference(list(treated), list(base))
    d = treated - base
    ref = stats.ttest_rel(treated, base).confidence_interval(0.95)
    assert got["mean"] == pytest.approx(d.mean())
    assert got["ci95"] == pytest.approx([ref.low, ref.high], rel=1e-4)
    assert got["n"] == 1200
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([1.0], [1.0, 0.0])


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (8, 10), (400, 1000), (1000, 1000)])
def test_wilson_interval(k, n):
    ref = stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
    lo, hi = wilson_interval(k, n)
    assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=2e-4)
