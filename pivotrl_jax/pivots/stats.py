"""Per-candidate reward statistics under pi_0 (PivotRL Eq. 4) and the deterministic hashing that
sampling, splitting and down-sampling decisions use.

    mu(s)      = (1/K) sum_k r(s, a_k),          a_k ~ pi_0(. | s)
    sigma^2(s) = (1/K) sum_k (r(s, a_k) - mu(s))^2      (population variance, ddof = 0)

With ddof = 0 a single sample (K = 1) has variance 0, so such a candidate is never a pivot: one draw
cannot show mixed outcomes.
"""

from __future__ import annotations

import hashlib

import numpy as np


def reward_stats(rewards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance per row.

    rewards: [C, K] float, K >= 1 samples per candidate. Returns (mean [C], variance [C]) in
    float64. The variance is computed from centred values and clipped at 0, so it is exactly 0 when
    all K rewards are equal (no negative round-off) and never NaN for finite rewards.
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] < 1:
        raise ValueError(f"rewards must be [C, K] with K >= 1, got shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards must be finite")
    mean = r.mean(axis=1)
    centred = r - mean[:, None]
    var = np.maximum((centred * centred).mean(axis=1), 0.0)
    var[np.all(r == r[:, :1], axis=1)] = 0.0
    return mean, var


def stable_unit(key: str, salt: str = "") -> float:
    """A deterministic number in [0, 1) from a string (same on every machine and process)."""
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def stable_seed(*parts: object) -> int:
    """A deterministic 31-bit seed from any parts (e.g. the run seed and a chunk index)."""
    digest = hashlib.blake2b("\x00".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2**31 - 1)
