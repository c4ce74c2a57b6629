"""PNG plots of profiling outcomes (matplotlib, no display needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from pivotrl_jax import atomic


def mean_reward_histogram(
    means: Sequence[float],
    lambda_diff: float,
    path: str | os.PathLike,
    bins: int = 20,
    title: str = "pi_0 mean reward per candidate",
) -> None:
    """Histogram of mu(s) with the lambda_diff bound marked; written atomically as PNG."""
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.hist(list(means), bins=bins, range=(0.0, 1.0), color="#4c72b0", edgecolor="white")
    ax.axvline(lambda_diff, color="#c44e52", linestyle="--", label=f"lambda_diff = {lambda_diff}")
    ax.set_xlabel("mean reward mu(s) under pi_0")
    ax.set_ylabel("candidates")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic.atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
