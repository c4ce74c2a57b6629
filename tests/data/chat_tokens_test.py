"""Chat templating on the tiny project tokenizer: prompt ids, completion tokens, exactness."""

import collections

from data_samples import traj_plain, traj_shell, traj_weather, write_jsonl

from pivotrl_jax.data import chat, extraction, records
from pivotrl_jax.data.openai_chat import parse_trajectory
from pivotrl_jax.data.schema import Message, ToolCall
from pivotrl_jax.data.turns import TurnOptions, trajectory_candidates


def _cands(row):
    return trajectory_candidates(
        parse_trajectory(row, "f.jsonl", 1), TurnOptions(), collections.Counter()
    )


def test_completion_text_for_each_kind():
    call = ToolCall("get_weather", {"city": "Zürich"}, id="a")
    other = ToolCall("run", {"cmd": "ls"}, id="b")
    assert chat.action_to_completion_text(Message("assistant", "Hi.")) == "Hi.<|im_end|>"
    assert chat.action_to_completion_text(Message("assistant", tool_calls=(call,))) == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich"}}\n</tool_call>'
        "<|im_end|>"
    )
    assert chat.action_to_completion_text(
        Message("assistant", "Two.", tool_calls=(call, other), reasoning_content="\nplan\n")
    ) == (
        "<think>\nplan\n</think>\n\nTwo.\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "run", "arguments": {"cmd": "ls"}}\n</tool_call><|im_end|>'
    )


def test_prompt_ids_are_the_templates_own_tokens(tiny_tokenizer):
    for c in _cands(traj_weather()):
        want = tiny_tokenizer.apply_chat_template(
            [m.to_dict() for m in c.state],
            tools=[dict(t) for t in c.tools],
            add_generation_prompt=True,
            tokenize=True,
        )["input_ids"]
        assert chat.prompt_ids(tiny_tokenizer, c.state, c.tools) == list(want)
        text = tiny_tokenizer.decode(chat.prompt_ids(tiny_tokenizer, c.state, c.tools))
        assert text.endswith("<|im_start|>assistant\n")


def test_single_query_turns_are_token_exact(tiny_tokenizer):
    """With one user query the Qwen3-style template renders every turn the same way in every
    prefix, so prompt(t) + completion(t) is a prefix of the whole conversation's tokens."""
    row = traj_shell()  # reasoning on every turn, one user query
    t = parse_trajectory(row, "f.jsonl", 1)
    whole = tiny_tokenizer.apply_chat_template(row["messages"], tools=row["tools"], tokenize=True)[
        "input_ids"
    ]
    for c in _cands(row):
        tok = chat.tokenize_candidate(
            tiny_tokenizer, c, chat.conversation_ids(tiny_tokenizer, t.messages, t.tools)
        )
        n = len(tok.prompt_ids) + len(tok.completion_ids)
        assert list(tok.prompt_ids + tok.completion_ids) == list(whole[:n])
        assert tok.mismatch_at is None
        assert tok.completion_ids[-1] == tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_dropped_reasoning_is_reported_not_hidden(tiny_tokenizer, tmp_path):
    """Two user queries, reasoning on the first query's turns: the whole conversation drops that
    reasoning (Qwen3 keeps <think> only after the last query), so the turns whose prompt or
    completion carries it cannot be token-exact: q1's call turn (its completion has <think>)
    and q1's answer (its prompt has turn 0's <think>). Turns after the second query are exact."""
    row = {
        "id": "r1",
        "messages": [
            {"role": "user", "content": "q1"},
            {
                "role": "assistant",
                "reasoning_content": "think 1",
                "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "a", "content": "ok"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"},
            {"role": "assistant", "reasoning_content": "think 2", "content": "a2"},
        ],
    }
    path = write_jsonl(tmp_path / "r.jsonl", [row, traj_plain()])
    out = tmp_path / "out"
    m = extraction.extract([path], out, extraction.ExtractOptions(), tokenizer=tiny_tokenizer)
    exact = {r["id"]: r["token_exact"] for r in records.read_records(out, "candidates")}
    assert {k: v for k, v in exact.items() if k.startswith("r1:")} == {
        "r1:0": False,
        "r1:1": False,
        "r1:2": True,
    }
    assert m["token_check"]["checked"] == 5 and m["token_check"]["exact"] == 3
    assert m["token_check"]["mismatch"] == 2
    assert [e["id"] for e in m["token_check"]["examples"]] == ["r1:0", "r1:1"]
    # r1:0's prompt is exact; the first wrong token is the completion's <think>.
    r0 = next(r for r in records.read_records(out, "candidates") if r["id"] == "r1:0")
    assert m["token_check"]["examples"][0]["first_difference"] == len(r0["prompt_ids"])
    assert r0["completion_ids"][0] == tiny_tokenizer.convert_tokens_to_ids("<think>")

    m2 = extraction.extract(
        [path],
        tmp_path / "strict",
        extraction.ExtractOptions(drop_token_mismatch=True),
        tokenizer=tiny_tokenizer,
    )
    assert m2["candidates"] == 3 and m2["skipped_turns"] == {"token_mismatch": 2}


def test_max_prompt_tokens_drop_and_left_truncate(tiny_tokenizer, tmp_path):
    msgs = [{"role": "system", "content": "sys"}]
    for i in range(6):
        msgs += [
            {"role": "user", "content": f"question {i} " + "word " * 30},
            {"role": "assistant", "content": f"answer {i}"},
        ]
    row = {"id": "long", "messages": msgs}
    path = write_jsonl(tmp_path / "long.jsonl", [row])
    t = parse_trajectory(row, path, 1)
    lengths = [len(chat.prompt_ids(tiny_tokenizer, t.messages[: 2 + 2 * i], ())) for i in range(6)]
    limit = lengths[2]  # turns 0..2 fit as they are; 3..5 do not

    m = extraction.extract(
        [path],
        tmp_path / "drop",
        extraction.ExtractOptions(max_prompt_tokens=limit),
        tokenizer=tiny_tokenizer,
    )
    assert m["candidates"] == 3 and m["skipped_turns"] == {"prompt_too_long": 3}

    out = tmp_path / "left"
    m = extraction.extract(
        [path],
        out,
        extraction.ExtractOptions(max_prompt_tokens=limit, truncation="left"),
        tokenizer=tiny_tokenizer,
    )
    assert m["candidates"] == 6 and m["truncated"] == 3
    recs = {r["id"]: r for r in records.read_records(out, "candidates")}
    for k in range(6):
        r = recs[f"long:{k}"]
        assert len(r["prompt_ids"]) <= limit
        state = r["messages"]
        # The system message stays; whole exchanges go from the front, so a user turn follows it.
        assert state[0]["role"] == "system" and state[1]["role"] == "user"
        assert state[-1]["content"].startswith(f"question {k} ")
        assert r["truncated_messages"] == len(t.messages[: 2 + 2 * k]) - len(state)
        # Each truncated prompt keeps as many exchanges as fit: one more would not.
        if r["truncated_messages"]:
            assert r["truncated_messages"] == 2 * (k - 2)


def test_tokenize_later_equals_tokenize_at_extraction(sft_file, tiny_tokenizer, tmp_path):
    plain, tok = tmp_path / "plain", tmp_path / "tok"
    extraction.extract([sft_file], plain)
    extraction.extract([sft_file], tok, tokenizer=tiny_tokenizer)
    later = [
        chat.tokenize_record(tiny_tokenizer, r) for r in records.read_records(plain, "candidates")
    ]
    now = list(records.read_records(tok, "candidates"))
    assert [r["prompt_ids"] for r in later] == [r["prompt_ids"] for r in now]
    assert [r["completion_ids"] for r in later] == [r["completion_ids"] for r in now]
    assert all(r["prompt_ids"] for r in later)
