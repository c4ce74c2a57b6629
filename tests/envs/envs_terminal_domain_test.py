"""Terminal domain: experts succeed, states rebuild from messages, acceptability by execution."""

import json

import pytest

from pivotrl_jax.envs import DOMAINS, generate_sft, generate_tasks, run_episode
from pivotrl_jax.envs.terminal import TerminalSandbox, acceptable, make_task, replay
from pivotrl_jax.envs.terminal.env import TerminalEnv, observation
from pivotrl_jax.envs.terminal.shell import Shell
from pivotrl_jax.rewards import build_verifier
from pivotrl_jax.rewards.actions import parse_action
from pivotrl_jax.rewards.base import VerifyState

TRAJECTORIES = generate_sft("terminal", 300, seed=3)


def _cmd(command: str) -> dict:
    call = {"name": "run_command", "arguments": json.dumps({"command": command})}
    return {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "c", "type": "function", "function": call}],
    }


def _turns(traj):
    """(history, assistant message) for every assistant turn."""
    msgs = traj["messages"]
    return [(msgs[:k], m) for k, m in enumerate(msgs) if m["role"] == "assistant"]


def test_every_expert_trajectory_replays_to_success():
    kinds = set()
    for traj in TRAJECTORIES:
        task = make_task(traj["metadata"]["session"])
        steps = [m for _, m in _turns(traj)]
        result = run_episode(
            task, lambda msgs, tools, s=steps: s[sum(m["role"] == "assistant" for m in msgs)]
        )
        assert result.success, traj["id"]
        assert result.messages == traj["messages"]
        kinds.add(task.kind)
    assert kinds == {
        "archive_files",
        "append_line",
        "backup_dir",
        "clean_tmp",
        "count_lines",
        "count_into_file",
        "count_matches",
        "find_word",
        "make_file",
        "move_match",
        "rename_file",
    }


def test_doing_nothing_fails_change_tasks_and_wrong_answers_fail_questions():
    for task in generate_tasks("terminal", 60, seed=1):
        if task.answer is None:
            assert task.goal != task.initial.tree()
            assert not run_episode(task, lambda m, t: "Done.").success
        else:
            assert not run_episode(task, lambda m, t: "The answer is 1000.").success


def test_sandbox_rebuilds_the_live_state_and_reproduces_observations():
    for traj in TRAJECTORIES[:120]:
        task = make_task(traj["metadata"]["session"])
        live = TerminalEnv(task)
        msgs = traj["messages"]
        for k, m in enumerate(msgs):
            if m["role"] != "assistant" or not m.get("tool_calls"):
                continue
            box = TerminalSandbox(msgs[:k])
            assert box.shell.fs.digest() == live.shell.fs.digest()
            command = json.loads(m["tool_calls"][0]["function"]["arguments"])["command"]
            ran = box.run(command)
            assert ran.output == msgs[k + 1]["content"]  # the recorded tool result
            live.step(m)
            assert ran.state_digest == live.shell.fs.digest()


def test_replay_needs_a_session():
    with pytest.raises(ValueError, match="Session"):
        replay([{"role": "system", "content": "no id"}])


def test_expected_actions_are_acceptable_and_harmful_ones_are_not():
    checked = 0
    for traj in TRAJECTORIES[:150]:
        for history, m in _turns(traj):
            assert acceptable(history, m, m)
            if m.get("tool_calls"):
                assert not acceptable(history, m, _cmd("rm -rf ~"))
                assert not acceptable(history, m, {"role": "assistant", "content": "Done."})
            else:
                assert not acceptable(history, m, "I could not find it.")
                assert not acceptable(history, m, _cmd("ls"))
            checked += 1
    assert checked > 300


def _state_before(kind: str, first_command_prefix: str):
    for traj in TRAJECTORIES:
        if traj["metadata"]["kind"] != kind:
            continue
        for history, m in _turns(traj):
            if m.get("tool_calls"):
                cmd = json.loads(m["tool_calls"][0]["function"]["arguments"])["command"]
                if cmd.startswith(first_command_prefix):
                    return make_task(traj["metadata"]["session"]), history, m
    raise AssertionError(f"no {kind} state with {first_command_prefix!r}")


def test_archive_move_alternatives():
    task, history, expected = _state_before("archive_files", "mv ")
    src, dst, ext, moved = (task.params[k] for k in ("src", "dst", "ext", "moved"))
    _, shell = replay(history)
    assert shell.fs.cwd == "/home/user" and shell.fs.is_dir(f"/home/user/{dst}")
    good = [
        f"mv {src}/*{ext} {dst}",
        f"mv {' '.join(f'/home/user/{src}/{n}' for n in moved)} ~/{dst}/",
    ]
    bad = [f"cp {src}/*{ext} {dst}", f"mv {src}/{moved[0]} {dst}", f"mv {src} {dst}", f"ls {src}"]
    assert all(acceptable(history, expected, _cmd(c)) for c in good)
    assert not any(acceptable(history, expected, _cmd(c)) for c in bad)


def test_lookup_alternatives_need_the_expected_information():
    task, history, _ = _state_before("find_word", "grep ")
    d, word = task.params["dir"], task.params["word"]
    lines = _cmd(f"grep -r {word} {d}")
    names_only = _cmd(f"grep -rl {word} {d}")
    numbered = _cmd(f"grep -rn {word} {d}")
    assert acceptable(history, names_only, lines)
    assert acceptable(history, lines, numbered)
    assert not acceptable(history, lines, names_only)  # lacks the matching line's text


def test_domain_verifier_accepts_other_spellings_and_steps_of_a_correct_plan():
    task, history, expected = _state_before("archive_files", "mv ")
    src, dst, ext, moved = (task.params[k] for k in ("src", "dst", "ext", "moved"))
    spec = DOMAINS.get("terminal").verifier
    verifier = build_verifier(spec.name, **spec.params)
    state = VerifyState(messages=tuple(history), tools=tuple(TerminalEnv(task).tools))
    exp = parse_action(expected)

    def reward(command: str) -> float:
        return verifier.verify(state, exp, parse_action(_cmd(command))).reward

    assert reward(f"mv ./{src}/*{ext} /home/user/{dst}/") == 1.0  # same effect
    assert reward(f"mv {src}/{moved[0]} {dst}/") == 1.0  # one of the needed moves
    assert reward(f"cp {src}/*{ext} {dst}/") == 1.0  # the first half of copy-then-delete
    assert reward(f"mv {src}/*{ext} {src}/..") == 0.0  # somewhere else
    assert reward(f"rm {src}/{moved[0]}") == 0.0  # loses a file
    assert reward(f"cat {src}/{moved[0]}") == 0.0  # no progress


def test_observation_marks_failures():
    shell = Shell(make_task(2).initial.copy())
    assert observation(shell.run("cat missing")).endswith("[exit code 1]")


def test_expert_commands_all_succeed_and_end_at_home():
    for traj in TRAJECTORIES:
        tool_results = [m["content"] for m in traj["messages"] if m["role"] == "tool"]
        assert not any("[exit code" in r for r in tool_results), traj["id"]
        _, shell = replay(traj["messages"])
        assert shell.fs.cwd == "/home/user"


def test_output_information_ignores_path_spelling():
    traj = next(t for t in TRAJECTORIES if t["metadata"]["kind"] == "find_word")
    task = make_task(traj["metadata"]["session"])
    d, word = task.params["dir"], task.params["word"]
    history = traj["messages"][:2]
    expected = _cmd(f"grep -r {word} {d}")
    for spelled in (f"./{d}", f"/home/user/{d}/", f"~/{d}"):
        assert acceptable(history, expected, _cmd(f"grep -r {word} {spelled}"))
    assert acceptable(history, _cmd(f"find {d} -type f"), _cmd(f"find ~/{d} -type f"))
    assert not acceptable(history, expected, _cmd(f"grep -r zzz{word} {d}"))


def test_extra_or_foreign_calls_are_not_acceptable():
    traj = next(t for t in TRAJECTORIES if t["metadata"]["kind"] == "find_word")
    history, expected = _turns(traj)[0]
    command = json.loads(expected["tool_calls"][0]["function"]["arguments"])["command"]
    with_extra = _cmd(command)
    with_extra["tool_calls"].append(
        {"id": "d", "type": "function", "function": {"name": "delete_all", "arguments": "{}"}}
    )
    assert acceptable(history, expected, _cmd(command))
    assert not acceptable(history, expected, with_extra)


def test_a_count_answer_with_other_numbers_is_not_acceptable():
    """A final message listing several numbers guesses the count: neither the turn verifier nor
    the episode's success accepts it; the expert's own message is accepted."""
    checked = 0
    for traj in TRAJECTORIES:
        task = make_task(traj["metadata"]["session"])
        if not task.report.isdigit():
            continue
        history, final = _turns(traj)[-1]
        other = str(int(task.report) + 1)
        assert acceptable(history, final, final)
        assert acceptable(history, final, f"The answer is {task.report}.")
        assert not acceptable(history, final, f"{task.report} lines. Or {other}.")
        assert not acceptable(history, final, f"The answer is {task.report}. I wrote {other}.")
        env = TerminalEnv(task)
        env.final_text = f"It is {task.report}, maybe {other}."
        assert not env.success() or task.answer is None
        checked += 1
    assert checked >= 20
