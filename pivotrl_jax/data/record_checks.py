"""Checks of the record fields a stage reads, with errors located by shard, record and field.

Records are written by `pivotrl extract` / `profile` / `select`, but a folder may come from
elsewhere or be edited by hand. A stage checks each record before it uses it, so a bad one gives

    cands/candidates-00002-of-00004.array_record:17: prompt_ids[3]: token id 4096 is not in
    [0, 300) (the model's vocabulary)

(record 17 of that shard) instead of a traceback from deep inside a jitted function or, worse,
a silently clamped embedding lookup.

    check = prompt_record_check(vocab_size=300, need_action=True)
    check(record, shard_path, index)   # raises InputError
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pivotrl_jax.errors import InputError

RecordCheck = Callable[[Mapping[str, Any], "str | os.PathLike", int], None]


def _fail(message: str, path: str | os.PathLike, index: int, field: str) -> None:
    raise InputError(message, path=path, line=index + 1, field=field, reason="bad_record")


def check_token_ids(
    value: Any,
    field: str,
    path: str | os.PathLike,
    index: int,
    vocab_size: int | None,
    allow_empty: bool = False,
) -> None:
    """`value` is a list (or int array) of token ids in [0, vocab_size)."""
    if isinstance(value, np.ndarray):
        ids = value
        if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
            _fail(f"expected a list of token ids, got an array {ids.dtype}{list(ids.shape)}",
                  path, index, field)  # fmt: skip
    elif isinstance(value, list | tuple):
        for i, t in enumerate(value):
            if not isinstance(t, int) or isinstance(t, bool):
                _fail(f"token id {t!r} is not an integer", path, index, f"{field}[{i}]")
        ids = np.asarray(value, np.int64)
    else:
        _fail(f"expected a list of token ids, got {type(value).__name__}", path, index, field)
    if not allow_empty and ids.size == 0:
        _fail("is empty", path, index, field)
    if ids.size:
        bad = np.flatnonzero((ids < 0) | (ids >= (vocab_size or np.iinfo(np.int64).max)))
        if bad.size:
            i = int(bad[0])
            _fail(f"token id {int(ids[i])} is not in [0, {vocab_size}) (the model's vocabulary)",
                  path, index, f"{field}[{i}]")  # fmt: skip


def prompt_record_check(vocab_size: int | None, need_action: bool = True) -> RecordCheck:
    """Candidates and pivots (profile, train): a string `id`, `prompt_ids` in the vocabulary and,
    with `need_action`, a valid `expected_action` plus list-valued `messages` / `tools`."""
    from pivotrl_jax.rewards.actions import parse_action  # deferred: rewards is a peer package

    def check(record: Mapping[str, Any], path: str | os.PathLike, index: int) -> None:
        if not isinstance(record.get("id"), str) or not record["id"]:
            _fail("missing or not a non-empty string", path, index, "id")
        if record.get("prompt_ids") is None:
            _fail("missing (extract with a tokenizer: `pivotrl extract --tokenizer DIR`)",
                  path, index, "prompt_ids")  # fmt: skip
        check_token_ids(record["prompt_ids"], "prompt_ids", path, index, vocab_size)
        if not need_action:
            return
        if "expected_action" not in record:
            _fail("missing", path, index, "expected_action")
        action = parse_action(record["expected_action"])
        if action.error is not None:
            _fail(f"not a valid action ({action.error})", path, index, "expected_action")
        for key in ("messages", "tools"):
            if not isinstance(record.get(key, []), list):
                _fail(f"expected a list, got {type(record[key]).__name__}", path, index, key)

    return check


def sft_record_check(vocab_size: int | None) -> RecordCheck:
    """SFT turns: `prompt_ids` and `completion_ids` in the vocabulary and, when present, a
    `completion_mask` as long as the completion."""

    def check(record: Mapping[str, Any], path: str | os.PathLike, index: int) -> None:
        for key in ("prompt_ids", "completion_ids"):
            if record.get(key) is None:
                _fail("missing (extract with a tokenizer)", path, index, key)
            check_token_ids(record[key], key, path, index, vocab_size, allow_empty=True)
        mask = record.get("completion_mask")
        if mask is not None and (
            not isinstance(mask, list | np.ndarray) or len(mask) != len(record["completion_ids"])
        ):
            _fail("expected a list as long as completion_ids", path, index, "completion_mask")

    return check
