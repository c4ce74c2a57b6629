"""Print records readably: state tail, expected action, profile statistics, tokens."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

from absl import flags

from pivotrl_jax.data import extraction, pivot_rows, records
from pivotrl_jax.errors import InputError

POSITIONAL = "dir"  # `pivotrl show DIR` = `pivotrl show --dir DIR`


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("dir", None, "Folder of record shards or pivot_rows.jsonl.", flag_values=fv)
    flags.DEFINE_integer("n", 5, "Records to print per shard set.", flag_values=fv)
    flags.DEFINE_integer(
        "tail", 3, "Messages of the state to print (the last ones).", flag_values=fv
    )
    flags.DEFINE_string(
        "prefix", None, "Only this shard set (e.g. candidates, pivots-train).", flag_values=fv
    )
    flags.DEFINE_integer("width", 160, "Cut message texts to this many characters.", flag_values=fv)


def _cut(text: str, width: int) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 3] + "..."


def _message(m: Mapping[str, Any], width: int) -> str:
    role = m["role"] if m["role"] != "tool" else f"tool[{m.get('tool_call_id', '')}]"
    parts = []
    if m.get("reasoning_content"):
        parts.append(f"<think>{m['reasoning_content']}</think>")
    if m.get("content"):
        parts.append(m["content"])
    for call in m.get("tool_calls") or ():
        fn = call["function"]
        parts.append(f"{fn['name']}({json.dumps(fn['arguments'], ensure_ascii=False)})")
    return f"{role}: " + _cut("  ".join(parts), width)


def format_record(r: Mapping[str, Any], tail: int, width: int) -> str:
    state = r.get("messages") or []
    head = (
        f"── {r.get('id')}  [{r.get('kind')}]  domain={r.get('domain')}  "
        f"verifier={r.get('verifier')}  ({len(state)} messages before; {r.get('source', '')})"
    )
    lines = [head]
    if len(state) > tail:
        lines.append(f"   ... ({len(state) - tail} earlier messages)")
    lines += [
        "   " + _message(m, width) for m in state[len(state) - tail if tail else len(state) :]
    ]
    lines.append(" → " + _message(r["expected_action"], width))
    profile = r.get("profile")
    if profile:
        rewards = profile.get("rewards")
        lines.append(
            f"   profile: mean={profile.get('mean')} variance={profile.get('variance')}"
            + (f" rewards={rewards}" if rewards is not None else "")
        )
    if r.get("split"):
        lines.append(f"   split: {r['split']}")
    if r.get("prompt_ids") is not None:
        n_completion = len(r.get("completion_ids") or ())
        lines.append(
            f"   tokens: prompt {len(r['prompt_ids'])}, completion {n_completion}, "
            f"token_exact={r.get('token_exact')}"
        )
    if r.get("truncated_messages"):
        lines.append(f"   truncated: {r['truncated_messages']} messages dropped from the front")
    return "\n".join(lines)


def _pivot_row_records(path: str) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line, text in enumerate(f, 1):
            if text.strip():
                c = pivot_rows.row_to_candidate(
                    json.loads(text), path, line, "default", lambda d: ""
                )
                yield c.to_record()


def record_sets(in_dir: str, prefix: str | None) -> dict[str, Iterator[dict[str, Any]]]:
    if not os.path.isdir(in_dir):
        raise InputError("not a folder", path=in_dir)
    sets: dict[str, Iterator[dict[str, Any]]] = {
        p: records.read_records(in_dir, p)
        for p in records.shard_prefixes(in_dir)
        if prefix in (None, p)
    }
    rows = os.path.join(in_dir, extraction.PIVOT_ROWS_NAME)
    if os.path.exists(rows) and prefix in (None, "pivot_rows"):
        sets["pivot_rows"] = _pivot_row_records(rows)
    if not sets:
        raise InputError("no record shards or pivot_rows.jsonl here", path=in_dir)
    return sets


def main(fv: flags.FlagValues) -> int:
    if not fv.dir:
        raise InputError("usage: pivotrl show --dir DIR [--n 5] [--tail 3] [--prefix NAME]")
    for name, recs in record_sets(fv.dir, fv.prefix).items():
        print(f"== {name} ==")
        for r in itertools.islice(recs, fv.n):
            print(format_record(r, fv.tail, fv.width))
    return 0
