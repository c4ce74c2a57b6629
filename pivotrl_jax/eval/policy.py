"""A batch policy backed by a rollout engine: chat histories in, completion texts out."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pivotrl_jax.rollout.text import chat_prompt_ids, completion_text


class EnginePolicy:
    """Renders each history with the model's chat template, samples one completion per history
    in a single engine call, and decodes it (trailing end-of-turn token dropped).

    `max_prompt_tokens` left-truncates prompts that outgrow the model's context. `record`, if
    given, is called after each engine call with the prompt ids and the completions (in the
    order of the histories), e.g. to train on the exact sampled tokens.
    """

    def __init__(
        self,
        engine: Any,
        tokenizer: Any,
        params: Any,
        max_prompt_tokens: int = 0,
        record: Callable[[list[list[int]], list[Any]], None] | None = None,
    ):
        self.engine = engine
        self.tokenizer = tokenizer
        self.params = params
        self.max_prompt_tokens = max_prompt_tokens
        self.record = record
        self.calls = 0
        self.generated_tokens = 0

    def __call__(
        self,
        histories: Sequence[Sequence[Mapping[str, Any]]],
        tools: Sequence[Sequence[Mapping[str, Any]]],
    ) -> list[str]:
        prompts = [chat_prompt_ids(self.tokenizer, h, t) for h, t in zip(histories, tools)]
        if self.max_prompt_tokens:
            prompts = [p[-self.max_prompt_tokens :] for p in prompts]
        params = self.params
        if params.seed is not None:  # a fresh, reproducible seed for every turn's batch
            params = dataclasses.replace(params, seed=params.seed + 7919 * self.calls)
        groups = self.engine.generate(prompts, params, 1)
        self.calls += 1
        if self.record is not None:
            self.record(prompts, [comp for (comp,) in groups])
        out = []
        for (comp,) in groups:
            self.generated_tokens += len(comp.token_ids)
            out.append(completion_text(self.tokenizer, comp.token_ids, self.params.stop_token_ids))
        return out
