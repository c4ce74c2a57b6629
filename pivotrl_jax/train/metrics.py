"""What a training run reports: rollout statistics, FLOPs and MFU, step-time splits, writers.

Rollout metrics are pure numpy functions of one rollout batch ([P, G] = pivots x samples).
`MetricsWriter` appends one JSON object per step to `metrics.jsonl` (and TensorBoard events
through tensorboardX when it is installed); on resume it first drops rows past the restored
step, so the file reads as one uninterrupted run. Of several processes only the primary writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pivotrl_jax import atomic, distributed
from pivotrl_jax.models.config import ModelConfig

METRICS_FILE = "metrics.jsonl"


def rollout_metrics(
    rewards: np.ndarray,  # [P, G]
    keep: np.ndarray,  # [P] bool: groups with reward variance > 0
    lengths: np.ndarray,  # [P, G] response tokens
    truncated: np.ndarray,  # [P, G] bool: finish_reason == "length"
    verifier_errors: np.ndarray,  # [P, G] bool: the verifier raised or timed out
) -> dict[str, float]:
    """Reward mean/std, the zero-std group fraction, response lengths, truncation, errors."""
    P = rewards.shape[0]
    return {
        "reward/mean": float(np.mean(rewards)),
        "reward/std": float(np.std(rewards)),
        "reward/group_std_mean": float(np.mean(np.std(rewards, axis=1))),
        "groups/zero_std_fraction": float(1.0 - np.mean(keep)) if P else 0.0,
        "groups/dropped": float(P - np.sum(keep)),
        "response/length_mean": float(np.mean(lengths)),
        "response/length_max": float(np.max(lengths)),
        "response/truncation_rate": float(np.mean(truncated)),
        "verifier/error_rate": float(np.mean(verifier_errors)),
    }


def batch_metrics(
    segment_ids: np.ndarray,  # [B, T] 0 = padding
    parent_ids: np.ndarray,  # [B, T] 0 = none
) -> dict[str, float]:
    """The trainer batch's shape: real tokens, rows, the padded fraction of the [B, T] grid and
    the prompt tokens computed once for several responses (prefix-shared rows)."""
    seg, par = np.asarray(segment_ids), np.asarray(parent_ids)
    tokens = float(np.sum(seg > 0))
    shared = 0.0
    for row_seg, row_par in zip(seg, par):
        prefixes = np.unique(row_par[row_par > 0])
        children = [len(np.unique(row_seg[row_par == p])) for p in prefixes]
        shared += sum((n - 1) * np.sum(row_seg == p) for p, n in zip(prefixes, children))
    return {
        "update/tokens": tokens,
        "update/rows": float(seg.shape[0]),
        "update/pad_fraction": 1.0 - tokens / seg.size,
        "update/prompt_tokens_shared": float(shared),
    }


def matmul_params_per_token(cfg: ModelConfig) -> float:
    """Weights each token multiplies through (MoE: the R routed experts plus the router);
    the embedding lookup is not a matmul and is left out."""
    D, N, K, H = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    attn = D * H * (2 * N + 2 * K)  # q, o and k, v projections
    total = 0.0
    for layer in range(cfg.num_hidden_layers):
        if cfg.is_moe_layer(layer):
            mlp = D * cfg.num_experts + cfg.num_experts_per_tok * 3 * D * cfg.moe_intermediate_size
        else:
            mlp = 3 * D * cfg.intermediate_size
        total += attn + mlp
    return total + D * cfg.vocab_size  # output head


def train_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """6·N + 12·L·N·H·T (PaLM, arXiv 2204.02311, App. B): forward + backward of the weights
    (N matmul params per token) plus attention scores and values over a context of T."""
    attention = 12 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim * seq_len
    return 6 * matmul_params_per_token(cfg) + attention


def forward_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """A third of the training FLOPs: one forward pass (reference / old logprobs)."""
    return train_flops_per_token(cfg, seq_len) / 3


class StepTimer:
    """Wall time per phase: `with timer("rollout"): ...`; `split()` gives `time/<phase>`."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start

    def split(self) -> dict[str, float]:
        out = {f"time/{k}": v for k, v in self.seconds.items()}
        out["time/step"] = sum(self.seconds.values())
        return out


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Device scalars and numpy values -> plain floats (one host transfer per value)."""
    return {k: float(np.asarray(v)) for k, v in metrics.items()}


class MetricsWriter:
    """JSONL (always) and TensorBoard (when tensorboardX imports) per step."""

    def __init__(
        self, out_dir: str | os.PathLike, tensorboard: bool = True, resume_step: int | None = None
    ):
        self.path = Path(out_dir) / METRICS_FILE
        self._file = self._tb = None
        if not distributed.is_primary():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            self._truncate_after(resume_step)
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:  # JSONL only
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(str(Path(out_dir) / "tensorboard"))

    @property
    def tensorboard(self) -> bool:
        return self._tb is not None

    def _truncate_after(self, step: int) -> None:
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a row cut short by a kill
                continue
            if row.get("step", 0) <= step:
                kept.append(line)
        atomic.write_text(self.path, "".join(f"{x}\n" for x in kept))  # a kill keeps the old

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if self._file is None:
            return
        row = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(row, sort_keys=True) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                if np.isfinite(v):
                    self._tb.add_scalar(k, float(v), step)
            self._tb.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(out_dir: str | os.PathLike) -> list[dict[str, float]]:
    path = Path(out_dir) / METRICS_FILE
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
