"""The episode loop with raw-text policies: Hermes tool calls, malformed calls, turn limits."""

import json

from pivotrl_jax.envs import expert_policy, generate_tasks, run_episode
from pivotrl_jax.envs.messages import to_message


def _as_hermes(message: dict) -> str:
    """An assistant dict rendered as Qwen3/Hermes completion text."""
    if not message.get("tool_calls"):
        return message["content"]
    blocks = [
        "<tool_call>\n"
        + json.dumps(
            {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
        )
        + "\n</tool_call>"
        for c in message["tool_calls"]
    ]
    return "<think>\nplan\n</think>\n\n" + "\n".join(blocks)


def test_raw_text_policy_solves_tasks_like_the_expert():
    for domain in ("tool_use", "terminal"):
        for task in generate_tasks(domain, 40, seed=7):
            expert = expert_policy(task, seed=1)
            result = run_episode(task, lambda m, t, e=expert: _as_hermes(e(m, t)))
            reference = run_episode(task, expert)
            assert result.success and reference.success
            assert [m["role"] for m in result.messages] == [m["role"] for m in reference.messages]


def test_parallel_calls_in_one_completion():
    task = next(t for t in generate_tasks("tool_use", 80, seed=1) if t.kind == "total_spent")
    cid = task.params["customer_id"]
    order_ids = task.world["customers"][cid]["order_ids"]
    email = task.world["customers"][cid]["email"]
    text = "".join(
        f'<tool_call>{{"name": "get_order", "arguments": {{"order_id": "{o}"}}}}</tool_call>'
        for o in order_ids
    )
    script = [
        f'<tool_call>{{"name": "find_customer", "arguments": {{"email": "{email}"}}}}</tool_call>',
        text,
        f"That is {task.answer} dollars.",
    ]
    result = run_episode(task, lambda m, t: script[sum(x["role"] == "assistant" for x in m)])
    assert result.success and result.turns == 3
    assert [m["role"] for m in result.messages].count("tool") == 1 + len(order_ids)


def test_malformed_call_ends_a_terminal_episode_as_a_failure():
    task = next(t for t in generate_tasks("terminal", 30, seed=0) if t.answer is None)
    result = run_episode(
        task, lambda m, t: '<tool_call>{"name": "run_command", "arguments": </tool_call>'
    )
    assert not result.success and result.turns == 1
    assert result.messages[-1]["content"].startswith("<tool_call>")


def test_turn_limit_stops_the_episode():
    task = generate_tasks("terminal", 1, seed=0)[0]
    loop = '<tool_call>{"name": "run_command", "arguments": {"command": "pwd"}}</tool_call>'
    result = run_episode(task, lambda m, t: loop, max_turns=5)
    assert (result.success, result.turns) == (False, 5)
    assert [m["content"] for m in result.messages if m["role"] == "tool"] == ["/home/user\n"] * 5


def test_unknown_tool_and_bad_arguments_are_reported_not_raised():
    task = generate_tasks("tool_use", 1, seed=0)[0]
    msg, _ = to_message('<tool_call>{"name": "drop_db", "arguments": {}}</tool_call>', 0)
    from pivotrl_jax.envs.tool_use import ToolUseEnv

    replies, done = ToolUseEnv(task).step(msg)
    assert (json.loads(replies[0]["content"]), done) == ({"error": "unknown tool 'drop_db'"}, False)


def test_to_message_keeps_given_ids_and_assigns_missing_ones():
    given = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "abc", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    assert to_message(given, 3)[0]["tool_calls"][0]["id"] == "abc"
    raw, action = to_message('<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>', 3)
    assert raw["tool_calls"][0]["id"] == "call_3_0" and action.kind == "tool_calls"
    assert json.loads(raw["tool_calls"][0]["function"]["arguments"]) == {"x": 1}
