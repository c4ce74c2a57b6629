"""Property: any valid candidate survives candidate -> public pivot row -> candidate unchanged,
and any trajectory's turns rebuild its conversation."""

import collections
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from pivotrl_jax.data import pivot_rows
from pivotrl_jax.data.openai_chat import parse_trajectory
from pivotrl_jax.data.turns import TurnOptions, trajectory_candidates

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
arguments = st.dictionaries(text, json_value, max_size=3)


@st.composite
def trajectories(draw):
    """Valid OpenAI chat rows: optional system, then exchanges of user -> assistant turns, where
    call turns are followed by one tool result per call."""
    messages = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(text)})
    n_call = 0
    for _ in range(draw(st.integers(1, 3))):
        messages.append({"role": "user", "content": draw(text)})
        for _ in range(draw(st.integers(0, 2))):
            calls = []
            for _ in range(draw(st.integers(1, 3))):
                args = draw(arguments)
                calls.append(
                    {
                        "id": f"c{n_call}",
                        "function": {
                            "name": draw(st.sampled_from(["f", "g_2"])),
                            "arguments": json.dumps(args),
                        },
                    }
                )
                n_call += 1
            turn = {"role": "assistant", "content": draw(text), "tool_calls": calls}
            if draw(st.booleans()):
                turn["reasoning_content"] = draw(text)
            messages.append(turn)
            messages += [
                {"role": "tool", "tool_call_id": c["id"], "content": draw(text)} for c in calls
            ]
        final = {"role": "assistant", "content": draw(text.filter(bool))}
        if draw(st.booleans()):
            final["reasoning_content"] = draw(text)
        messages.append(final)
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    return {
        "id": draw(st.from_regex(r"[a-z][a-z0-9_:.-]{0,8}", fullmatch=True)),
        "domain": "d",
        "tools": tools,
        "messages": messages,
    }


@settings(max_examples=60, deadline=None)
@given(trajectories())
def test_candidates_survive_pivot_rows(row):
    cands = trajectory_candidates(
        parse_trajectory(row, "f.jsonl", 7), TurnOptions(), collections.Counter()
    )
    assert len(cands) == sum(m["role"] == "assistant" for m in row["messages"])
    for c in cands:
        exported = json.loads(json.dumps(pivot_rows.candidate_to_row(c)))
        back = pivot_rows.row_to_candidate(exported, "rows.jsonl", 1, "other", lambda d: "other")
        assert back == c


@settings(max_examples=60, deadline=None)
@given(trajectories())
def test_last_turn_rebuilds_the_conversation(row):
    (*_, last) = trajectory_candidates(
        parse_trajectory(row, "f.jsonl", 7), TurnOptions(), collections.Counter()
    )
    rebuilt = [m.to_dict() for m in (*last.state, last.action)]
    want = []
    for m in row["messages"]:
        m = dict(m)
        if "tool_calls" in m:
            m["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {
                        "name": c["function"]["name"],
                        "arguments": json.loads(c["function"]["arguments"]),
                    },
                }
                for c in m["tool_calls"]
            ]
        want.append(m)
    assert rebuilt == want
