"""Chat templating: states -> prompt token ids, expected actions -> completion tokens.

A state is rendered once, offline, with the model's own chat template (tools included,
generation prompt added) and tokenised without adding special tokens:

    prompt_ids(s)     = encode(template(s, tools, add_generation_prompt=True))
    completion_ids(a) = encode(action_to_completion_text(a))

Token exactness: for turn t of a conversation C,

    prompt_ids(C[:t]) + completion_ids(C[t])  ==  encode(template(C))[: len(...)]

holds when the template renders earlier turns the same way in every prefix and the text
boundaries between prompt and completion do not merge under BPE. Templates that drop
earlier reasoning (Qwen3 keeps `<think>` only after the last user query) break it for some
turns; `check_exact` reports where instead of letting training drift silently.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from pivotrl_jax.data.schema import Candidate, Message

EOS = "<|im_end|>"


def action_to_completion_text(action: Message, eos: str = EOS) -> str:
    """The text the model should generate for `action` after the generation prompt.

    `<think>\\n{reasoning}\\n</think>\\n\\n` (when there is reasoning), the message text, then
    one `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>` block per call
    (newline-separated), then the end-of-turn token.

    >>> from pivotrl_jax.data.schema import ToolCall
    >>> action_to_completion_text(Message("assistant", tool_calls=(ToolCall("f", {"x": 1}),)))
    '<tool_call>\\n{"name": "f", "arguments": {"x": 1}}\\n</tool_call><|im_end|>'
    """
    parts = []
    if action.reasoning_content:
        parts.append(f"<think>\n{action.reasoning_content.strip(chr(10))}\n</think>\n\n")
    parts.append(action.content)
    for i, call in enumerate(action.tool_calls):
        if action.content or i:
            parts.append("\n")
        args = json.dumps(dict(call.arguments), ensure_ascii=False)
        parts.append(f'<tool_call>\n{{"name": "{call.name}", "arguments": {args}}}\n</tool_call>')
    parts.append(eos)
    return "".join(parts)


def render(
    tokenizer: Any,
    messages: Sequence[Message],
    tools: Sequence[Mapping[str, Any]],
    add_generation_prompt: bool,
) -> str:
    return tokenizer.apply_chat_template(
        [m.to_dict() for m in messages],
        tools=[dict(t) for t in tools] or None,
        add_generation_prompt=add_generation_prompt,
        tokenize=False,
    )


def encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def prompt_ids(tokenizer: Any, state: Sequence[Message], tools: Sequence[Mapping]) -> list[int]:
    return encode(tokenizer, render(tokenizer, state, tools, add_generation_prompt=True))


def completion_ids(tokenizer: Any, action: Message) -> list[int]:
    return encode(tokenizer, action_to_completion_text(action, eos=tokenizer.eos_token or EOS))


def conversation_ids(
    tokenizer: Any, messages: Sequence[Message], tools: Sequence[Mapping]
) -> list[int]:
    return encode(tokenizer, render(tokenizer, messages, tools, add_generation_prompt=False))


def first_difference(a: Sequence[int], b: Sequence[int]) -> int | None:
    """The first index where `a` is not a prefix of `b`, or None when it is."""
    for i, x in enumerate(a):
        if i >= len(b) or b[i] != x:
            return i
    return None


@dataclasses.dataclass(frozen=True)
class Tokenized:
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    mismatch_at: int | None  # first token of prompt+completion that leaves the conversation


def tokenize_candidate(
    tokenizer: Any, c: Candidate, conversation: Sequence[int] | None
) -> Tokenized:
    """Prompt and completion ids of `c`, checked against the whole conversation's ids.

    `conversation` is the tokenised whole trajectory; None checks against the state followed
    by the action (all that a candidate read from a pivot row knows).
    """
    p = prompt_ids(tokenizer, c.state, c.tools)
    q = completion_ids(tokenizer, c.action)
    if conversation is None:
        conversation = conversation_ids(tokenizer, (*c.state, c.action), c.tools)
    return Tokenized(tuple(p), tuple(q), first_difference(p + q, conversation))


def with_tokens(c: Candidate, t: Tokenized) -> Candidate:
    return dataclasses.replace(
        c,
        prompt_ids=t.prompt_ids,
        completion_ids=t.completion_ids,
        token_exact=t.mismatch_at is None,
    )


def truncate_left(
    tokenizer: Any, c: Candidate, max_tokens: int
) -> tuple[Candidate, list[int]] | None:
    """Drop whole exchanges from the front of the state (after leading system messages) until
    the prompt fits `max_tokens`; the state then starts at a user message. None if even the
    last exchange does not fit."""
    head = 0
    while head < len(c.state) and c.state[head].role == "system":
        head += 1
    system, rest = c.state[:head], list(c.state[head:])
    dropped = 0
    while True:
        ids = prompt_ids(tokenizer, (*system, *rest), c.tools)
        if len(ids) <= max_tokens:
            state = (*system, *rest)
            return dataclasses.replace(c, state=state, truncated_messages=dropped), ids
        # The next exchange starts at the next user message after the first one.
        nxt = next((i for i in range(1, len(rest)) if rest[i].role == "user"), None)
        if nxt is None:
            return None
        rest = rest[nxt:]
        dropped += nxt


def tokenize_record(tokenizer: Any, record: Mapping[str, Any]) -> dict[str, Any]:
    """A candidate record extracted without a tokenizer, with its token fields filled in
    (checked against the state followed by the action)."""
    c = Candidate.from_record(record)
    return {**record, **with_tokens(c, tokenize_candidate(tokenizer, c, None)).to_record()}
