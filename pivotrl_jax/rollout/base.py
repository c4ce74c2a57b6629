"""The rollout seam: what every engine takes (`SamplingParams`) and returns (`Completion`).

    engine = ENGINES.get("sglang")(...)              # or "jax": the in-process engine
    groups = engine.generate(prompt_ids, SamplingParams(max_new_tokens=64, seed=0), n=16)
    groups[p][g].token_ids, groups[p][g].logprobs    # prompt p, sample g (G = n per prompt)
    engine.update_weights(source, version=step)      # later completions carry weight_version=step

A completion's `logprobs[t]` is the behaviour policy's log pi(token_ids[t] | prompt, token_ids[:t])
in float32, the number GRPO's importance ratio and truncated importance sampling need.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal, Protocol

FinishReason = Literal["stop", "length", "abort"]
FINISH_REASONS: tuple[str, ...] = ("stop", "length", "abort")


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """How to sample one completion.

    temperature: 0 means greedy; 1.0 samples the model's own distribution.
    top_p: nucleus mass in (0, 1]; 1.0 is off.
    top_k: keep the k most likely tokens; -1 is off.
    max_new_tokens: a completion stops after this many tokens ("length").
    stop_token_ids: sampling one of these ends the completion ("stop"); the stop token is kept.
    seed: makes sampling reproducible where the engine supports it; None draws a fresh one.
    prompt_offset: the index of the first prompt in the whole batch when each process generates
      its own slice of it: prompt i draws what prompt prompt_offset + i of the batch would.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_new_tokens: int = 256
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None
    prompt_offset: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in self.stop_token_ids))
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k == 0 or self.top_k < -1:
            raise ValueError(f"top_k must be -1 (off) or >= 1, got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.prompt_offset < 0:
            raise ValueError(f"prompt_offset must be >= 0, got {self.prompt_offset}")


@dataclasses.dataclass(frozen=True)
class Completion:
    """One sampled completion of one prompt.

    token_ids: [T] the sampled tokens (a stop token that ended it included).
    logprobs: [T] float32 log-probability of each sampled token under the weights that sampled it.
    finish_reason: "stop" (stop token), "length" (max_new_tokens) or "abort" (engine shut down).
    weight_version: the version given to the `update_weights` call that loaded those weights.
    """

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish_reason: FinishReason
    weight_version: str | int

    def __post_init__(self) -> None:
        object.__setattr__(self, "token_ids", tuple(int(t) for t in self.token_ids))
        object.__setattr__(self, "logprobs", tuple(float(x) for x in self.logprobs))
        if len(self.token_ids) != len(self.logprobs):
            raise ValueError(f"{len(self.token_ids)} token ids but {len(self.logprobs)} logprobs")
        if self.finish_reason not in FINISH_REASONS:
            raise ValueError(
                f"finish_reason must be one of {FINISH_REASONS}, got {self.finish_reason!r}"
            )


class RolloutEngine(Protocol):
    """Samples completions with per-token logprobs; the JAX and SGLang engines implement it."""

    def generate(
        self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams, n: int = 1
    ) -> list[list[Completion]]:
        """For each prompt (token ids, never re-tokenised text), n completions, in prompt order."""
        ...

    def update_weights(self, source: Any, version: str | int) -> None:
        """Loads new weights from `source` (engine-specific); later completions carry `version`."""
        ...

    def close(self) -> None:
        """Releases the engine's resources; aborts requests still in flight."""
        ...
