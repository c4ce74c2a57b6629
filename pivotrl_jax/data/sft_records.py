"""Whole-trajectory SFT records: one sequence per trajectory, loss on every assistant span.

Per-turn candidates repeat the whole history before each turn, so supervised fine-tuning on them
costs O(turns x length) tokens; one record per trajectory costs O(length):

    prompt_ids      = template(messages before the first assistant turn, generation prompt)
    completion_ids  = the rest of the tokenised conversation
    completion_mask = 1 on each assistant turn's completion tokens (its text, calls and
                      <|im_end|>), 0 on user and tool tokens in between

A turn is supervised only where its prompt and completion tokens are exactly the conversation's
(see `chat.first_difference`); turns the template renders differently in the whole conversation
(e.g. dropped reasoning) are left unsupervised and counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pivotrl_jax.data.chat import completion_ids, conversation_ids, prompt_ids
from pivotrl_jax.data.schema import SCHEMA_VERSION
from pivotrl_jax.rollout.text import to_messages


def trajectory_record(
    tokenizer: Any, trajectory: Mapping[str, Any], max_tokens: int = 0
) -> tuple[dict | None, int]:
    """The SFT record of one trajectory (an OpenAI chat row), and its unsupervised-turn count.

    None when the trajectory has no assistant turn or exceeds `max_tokens` (0 = no limit).
    """
    messages = to_messages(trajectory["messages"], where=str(trajectory.get("id", "<trajectory>")))
    tools = list(trajectory.get("tools") or ())
    turns = [i for i, m in enumerate(messages) if m.role == "assistant"]
    if not turns:
        return None, 0
    conv = conversation_ids(tokenizer, messages, tools)
    if max_tokens and len(conv) > max_tokens:
        return None, 0
    prompt = prompt_ids(tokenizer, messages[: turns[0]], tools)
    if conv[: len(prompt)] != prompt:
        return None, len(turns)
    mask = [0.0] * (len(conv) - len(prompt))
    unsupervised = 0
    for t in turns:
        p = prompt_ids(tokenizer, messages[:t], tools)
        q = completion_ids(tokenizer, messages[t])
        if conv[: len(p) + len(q)] != p + q:
            unsupervised += 1
            continue
        for j in range(len(p), len(p) + len(q)):
            mask[j - len(prompt)] = 1.0
    record = {
        "schema_version": SCHEMA_VERSION,
        "record_type": "trajectory",
        "id": str(trajectory.get("id", "")),
        "trajectory_id": str(trajectory.get("id", "")),
        "domain": trajectory.get("domain", ""),
        "prompt_ids": prompt,
        "completion_ids": conv[len(prompt) :],
        "completion_mask": mask,
    }
    return record, unsupervised


def trajectory_records(
    tokenizer: Any, trajectories: Iterable[Mapping[str, Any]], max_tokens: int = 0
) -> tuple[list[dict], dict[str, int]]:
    """Records for every trajectory that fits, and counts (kept, too_long, unsupervised turns)."""
    out, counts = [], {"kept": 0, "skipped": 0, "unsupervised_turns": 0}
    for traj in trajectories:
        rec, unsup = trajectory_record(tokenizer, traj, max_tokens)
        counts["unsupervised_turns"] += unsup
        if rec is None:
            counts["skipped"] += 1
        else:
            out.append(rec)
            counts["kept"] += 1
    return out, counts
