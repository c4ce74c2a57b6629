"""95% intervals for the numbers an evaluation reports (pure functions).

>>> lo, hi = wilson_interval(8, 10)
>>> round(lo, 3), round(hi, 3)
(0.49, 0.943)
>>> paired_difference([1, 1, 0, 1], [0, 1, 0, 0])["mean"]
0.5
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# t_{0.975, df} for df = 1..10 (Student's table).
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)
Z975 = 1.959964


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom: the table up to 10,
    then the Cornish-Fisher expansion t = z + (z^3 + z)/4df + (5z^5 + 16z^3 + 3z)/96df^2
    (within 2e-3 of the exact value from df 11 on)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if df <= len(T95):
        return T95[df - 1]
    z = Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df * df)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion:
    (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)."""
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_ci(values: Sequence[float]) -> dict[str, float]:
    """Mean and 95% Student-t interval half-width: mean +- t_{0.975, n-1} s / sqrt(n), s with
    ddof 1 (half-width 0 for fewer than two values)."""
    n = len(values)
    if n == 0:
        return {"mean": float("nan"), "ci95": 0.0, "n": 0}
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "ci95": 0.0, "n": n}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "ci95": half, "n": n}


def paired_difference(
    treated: Sequence[float], base: Sequence[float]
) -> dict[str, float | list[float]]:
    """Mean of the per-item differences d_i = treated_i - base_i over the same items, with its
    95% Student-t interval [mean - h, mean + h], h = t_{0.975, n-1} s_d / sqrt(n)."""
    if len(treated) != len(base):
        raise ValueError(f"paired samples differ in length: {len(treated)} vs {len(base)}")
    diffs = [t - b for t, b in zip(treated, base)]
    m = mean_ci(diffs)
    return {"mean": m["mean"], "ci95": [m["mean"] - m["ci95"], m["mean"] + m["ci95"]], "n": m["n"]}
