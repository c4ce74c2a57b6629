"""Token ids <-> text at the engine boundary: prompts from chat states, completions to text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def chat_prompt_ids(
    tokenizer: Any, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
) -> list[int]:
    """The model's own chat template over OpenAI-style dict messages, generation prompt added."""
    from pivotrl_jax.data.chat import prompt_ids
    from pivotrl_jax.data.schema import Message

    return prompt_ids(tokenizer, [Message.from_dict(m) for m in messages], tools)


def completion_text(tokenizer: Any, token_ids: Sequence[int], stop_ids: Sequence[int] = ()) -> str:
    """Decode a completion, dropping one trailing stop token (e.g. `<|im_end|>`) if present.

    Special tokens inside the completion (`<tool_call>`, `<think>`) are kept: the action parser
    needs them.
    """
    ids = list(token_ids)
    stops = set(stop_ids) or {tokenizer.eos_token_id}
    if ids and ids[-1] in stops:
        ids = ids[:-1]
    return tokenizer.decode(ids, skip_special_tokens=False)
