"""Token ids <-> text at the engine boundary: prompts from chat states, completions to text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def to_messages(messages: Sequence[Mapping[str, Any]], where: str = "<history>") -> list:
    """OpenAI chat dicts (tool-call arguments as JSON strings or objects) -> `Message`s."""
    from pivotrl_jax.data.openai_chat import Located, content_text, parse_tool_call
    from pivotrl_jax.data.schema import Message

    at = Located(where, 0)
    out = []
    for i, m in enumerate(messages):
        calls = tuple(
            parse_tool_call(c, at, f"messages[{i}].tool_calls[{j}]")
            for j, c in enumerate(m.get("tool_calls") or ())
        )
        out.append(
            Message(
                role=m["role"],
                content=content_text(m.get("content"), at, f"messages[{i}].content"),
                tool_calls=calls,
                reasoning_content=m.get("reasoning_content"),
                tool_call_id=m.get("tool_call_id"),
            )
        )
    return out


def chat_prompt_ids(
    tokenizer: Any, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
) -> list[int]:
    """The model's own chat template over OpenAI-style dict messages, generation prompt added."""
    from pivotrl_jax.data.chat import prompt_ids

    return prompt_ids(tokenizer, to_messages(messages), tools)


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
