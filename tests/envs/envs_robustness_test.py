"""Whatever a policy emits, the simulators answer and never raise; their state stays well formed."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from pivotrl_jax.envs import generate_sft
from pivotrl_jax.envs.terminal import TerminalSandbox
from pivotrl_jax.envs.terminal import acceptable as terminal_acceptable
from pivotrl_jax.envs.terminal.fs import MAX_ENTRIES, VirtualFS, parent
from pivotrl_jax.envs.terminal.shell import Shell
from pivotrl_jax.envs.tool_use import ToolUseEnv
from pivotrl_jax.envs.tool_use import acceptable as tool_acceptable
from pivotrl_jax.envs.tool_use import make_task as tool_task

_PROGRAMS = [
    "ls",
    "cd",
    "cat",
    "mkdir",
    "mv",
    "cp",
    "rm",
    "grep",
    "find",
    "echo",
    "touch",
    "wc",
    "head",
    "tail",
    "sort",
    "pwd",
    "rmdir",
    "nope",
]
_ARGS = [
    "-r",
    "-p",
    "-rf",
    "-n",
    "2",
    "-name",
    "'*.log'",
    "*",
    "*.txt",
    ".",
    "..",
    "~",
    "/",
    "a",
    "a/b",
    "logs",
    "logs/*.log",
    "x.txt",
    "'a b'",
    '"q"',
    "-l",
    "-c",
    "-type",
    "d",
    "--",
    "-delete",
    "(a+)+",
    "[",
    "-maxdepth",
    "-x",
]
_OPS = [" ; ", " && ", " || ", " | ", " > ", " >> ", " < "]

_simple = st.builds(
    lambda p, a: " ".join([p, *a]),
    st.sampled_from(_PROGRAMS),
    st.lists(st.sampled_from(_ARGS), max_size=4),
)
_line = st.builds(
    lambda first, rest: first + "".join(op + cmd for op, cmd in rest),
    _simple,
    st.lists(st.tuples(st.sampled_from(_OPS), _simple), max_size=3),
)


def _walk_reference(fs: VirtualFS, path: str) -> list[str]:
    """Depth-first by recursion over sorted directory listings."""
    out = [path]
    if fs.is_dir(path):
        for name in fs.listdir(path):
            out += _walk_reference(fs, path.rstrip("/") + "/" + name)
    return out


def _seeded_fs() -> VirtualFS:
    fs = VirtualFS.empty()
    fs.mkdir("/home/user/logs/old", parents=True)
    fs.files["/home/user/logs/a.log"] = "error one\nok\n"
    fs.files["/home/user/x.txt"] = "text\n"
    return fs


@settings(max_examples=200, deadline=None)
@given(st.lists(_line, min_size=1, max_size=6))
def test_random_command_lines_never_raise_and_keep_the_tree_closed(lines):
    shell = Shell(_seeded_fs())
    for line in lines:
        result = shell.run(line)
        assert isinstance(result.output, str) and isinstance(result.status, int)
    fs = shell.fs
    assert fs.walk("/") == _walk_reference(fs, "/")
    assert "/" in fs.dirs
    assert all(parent(d) in fs.dirs for d in fs.dirs if d != "/")
    assert all(parent(f) in fs.dirs and f not in fs.dirs for f in fs.files)


def test_runaway_copies_hit_the_size_bound():
    shell = Shell(_seeded_fs())
    results = [shell.run(f"cp -r logs /t{k} && cp -r /t{k} logs/c{k}") for k in range(16)]
    assert not results[-1].ok and "No space left on device" in results[-1].output
    assert len(shell.fs.dirs) + len(shell.fs.files) <= MAX_ENTRIES


_TRAJ = {d: generate_sft(d, 8, seed=9) for d in ("terminal", "tool_use")}
_completion = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda c: (
            "<tool_call>"
            + json.dumps({"name": "run_command", "arguments": {"command": c}})
            + "</tool_call>"
        ),
        _line,
    ),
    st.builds(
        lambda n, a: f"<tool_call>{json.dumps({'name': n, 'arguments': a})}</tool_call>",
        st.sampled_from(
            ["find_customer", "get_order", "cancel_order", "update_address", "run_command", "zap"]
        ),
        st.dictionaries(
            st.sampled_from(["email", "name", "order_id", "reason", "customer_id", "command", "x"]),
            st.one_of(
                st.text(max_size=12), st.integers(), st.none(), st.lists(st.integers(), max_size=2)
            ),
            max_size=3,
        ),
    ),
)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["terminal", "tool_use"]), st.integers(0, 7), st.integers(0, 30), _completion
)
def test_acceptable_and_env_steps_never_raise(domain, which, turn, completion):
    msgs = _TRAJ[domain][which]["messages"]
    turns = [k for k, m in enumerate(msgs) if m["role"] == "assistant"]
    k = turns[turn % len(turns)]
    check = terminal_acceptable if domain == "terminal" else tool_acceptable
    assert check(msgs[:k], msgs[k], completion) in (True, False)
    if domain == "tool_use":
        from pivotrl_jax.envs.messages import to_message

        env = ToolUseEnv(tool_task(_TRAJ[domain][which]["metadata"]["session"]))
        replies, _ = env.step(to_message(completion, 0)[0])
        assert all(isinstance(r["content"], str) for r in replies)
    else:
        TerminalSandbox(msgs[:k]).run(completion)
