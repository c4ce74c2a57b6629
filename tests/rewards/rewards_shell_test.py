"""The `shell` verifier: argv normalisation by hand-worked cases, and sandbox comparison through
a dict-backed fake filesystem registered under a test-only name."""

import hashlib
import json
import shlex

import pytest

from pivotrl_jax.rewards import SANDBOXES, SandboxResult, VerifyState, build_verifier, parse_action
from pivotrl_jax.rewards.shell import normalize_command


@pytest.mark.parametrize(
    "a, b",
    [
        ("ls -la", "ls -al"),
        ("ls -la", "ls -l -a"),
        ("ls -l -a ./src", "ls -al src"),
        ("cat ./x", "cat x"),
        ("cat ././x", "cat x"),
        ("ls dir/", "ls dir"),
        ('echo "hello"', "echo hello"),
        ("echo 'a b'", 'echo "a b"'),
        ("grep -rn foo .", "grep -nr foo ."),
        ("cd src && make", "cd  src  &&  make"),
        ("cd src;make", "cd src ; make"),
        ("cd src\nmake\n", "cd src; make"),
        ("ls;", "ls"),
        ("tail -n 5 f", "tail -n 5 f"),
    ],
)
def test_equivalent_commands(a, b):
    assert normalize_command(a) == normalize_command(b)
    assert run(a, b).reward == 1.0


@pytest.mark.parametrize(
    "a, b",
    [
        ("ls -la", "ls -l"),
        ("ls -v", "ls -vv"),  # repeated flags keep their count
        ("rm -rf x", "rm -rf y"),
        ("cp a b", "cp b a"),
        ("head -n 5 -c 3 f", "head -c 5 -n 3 f"),  # flags do not move across their values
        ("ls -- -la", "ls -- -al"),  # after --, nothing is a flag
        ("./run.sh", "run.sh"),  # the program is kept as written
        ("a && b", "a || b"),
        ("echo a > f", "echo a >> f"),
        ("ls --all", "ls -a"),
    ],
)
def test_different_commands(a, b):
    assert normalize_command(a) != normalize_command(b)
    assert run(a, b).reward == 0.0


def test_normal_form_by_hand():
    assert normalize_command("ls -l -a ./src/ && echo 'done';") == (
        ("ls", "-al", "src"),
        ("&&",),
        ("echo", "done"),
    )


def call(cmd, name="bash", **extra):
    return {"type": "function_call", "name": name, "arguments": {"command": cmd, **extra}}


def run(expected, response, state=None, **params):
    state = state or VerifyState()
    v = build_verifier("shell", **params)
    to_action = lambda c: parse_action(call(c) if isinstance(c, str) else c)
    return v.verify(state, to_action(expected), to_action(response))


def test_call_shapes_and_other_arguments():
    assert run(call("ls", timeout=5), call("ls", timeout=5)).reward == 1.0
    assert run(call("ls", timeout=5), call("ls", timeout=9)).reason == "other_arguments_different"
    assert (
        run(call("ls", timeout=5), call("ls", timeout=9), compare_other_arguments=False).reward
        == 1.0
    )
    assert run(call("ls"), call("ls", name="sh")).reason == "name_different"
    assert run(call("ls"), {"type": "message", "content": "ls"}).reason == "kind_different"
    no_cmd = {"type": "function_call", "name": "bash", "arguments": {"cmd": "ls"}}
    assert run(call("ls"), no_cmd).reason == "command_missing"
    assert run(call("ls"), call("echo 'unbalanced")).reason == "unparsable_command"
    # messages carry keystrokes as text
    msg = lambda t: {"type": "message", "content": t}
    assert run(msg("ls -al\n"), msg("ls -la")).reward == 1.0


# ---- a fake sandbox: a dict filesystem with mkdir, touch, ls, cat, echo > -----------------------


class DictShell:
    """Tiny interpreter over {path: content}; nothing touches the host."""

    def __init__(self, files):
        self.files = dict(files)

    def run(self, command):
        out, ok = [], True
        for part in command.split("&&"):
            argv = shlex.split(part)
            if not argv:
                continue
            prog, args = argv[0], argv[1:]
            if prog == "touch":
                for a in args:
                    self.files.setdefault(a, "")
            elif prog == "ls":
                out.append("\n".join(sorted(self.files)) + "\n")
            elif prog == "cat":
                for a in args:
                    if a in self.files:
                        out.append(self.files[a])
                    else:
                        out.append(f"cat: {a}: No such file\n")
                        ok = False
            elif prog == "echo" and ">" in args:
                i = args.index(">")
                self.files[args[i + 1]] = " ".join(args[:i]) + "\n"
            elif prog == "echo":
                out.append(" ".join(args) + "\n")
            else:
                out.append(f"{prog}: command not found\n")
                ok = False
            if not ok:
                break
        digest = hashlib.sha256(json.dumps(self.files, sort_keys=True).encode()).hexdigest()
        return SandboxResult(output="".join(out), state_digest=digest, ok=ok)


def _dict_factory(state):
    return DictShell({"a.txt": "hello\n"})


if "test-dict-shell" not in SANDBOXES:
    SANDBOXES.register("test-dict-shell", _dict_factory)

BOX = {"sandbox": "test-dict-shell"}


@pytest.mark.parametrize(
    "expected, response, reward, reason",
    [
        ("cat a.txt", "cat ./a.txt", 1.0, "same_command"),  # decided before the sandbox
        ("touch b && ls", "touch b && ls", 1.0, "same_command"),
        ("echo hi > b", "echo  hi  >  b", 1.0, "same_command"),
        ("echo hello", "cat a.txt", 1.0, "same_effect"),
        ("touch b", "echo > b", 0.0, "different_effect"),  # content "" vs "\n"
        ("touch a.txt", "ls > /dev/null_does_not_exist && true", 0.0, "different_effect"),
        ("cat missing", "cat nothing", 0.0, "different_effect"),  # messages differ
        ("nosuch", "nosuch", 1.0, "same_command"),
    ],
)
def test_sandbox_comparison(expected, response, reward, reason):
    got = run(expected, response, **BOX)
    assert (got.reward, got.reason) == (reward, reason)


def test_sandbox_state_digest_decides():
    # "echo hello" prints what "cat a.txt" prints (same effect); but writing a file changes state
    got = run("cat a.txt", "echo hello > a.txt && cat a.txt", **BOX)
    assert got.info["same_output"] is True
    assert got.info["same_state"] is True  # a.txt already held "hello\n"
    assert got.reward == 1.0
    got = run("cat a.txt", "echo hello > c && cat a.txt", **BOX)
    assert (got.info["same_output"], got.info["same_state"], got.reward) == (True, False, 0.0)


made_states = []  # the states the counting factory was called with


def _counting_factory(state):
    made_states.append(state)
    return DictShell({})


if "test-counting-shell" not in SANDBOXES:
    SANDBOXES.register("test-counting-shell", _counting_factory)


def test_sandbox_factories_build_fresh_environments():
    made_states.clear()
    state = VerifyState(env="x")
    got = run("touch q", "touch q && ls", state, sandbox="test-counting-shell")
    assert made_states == [state, state]  # one per command, both from the same state
    assert got.reason == "different_effect"  # ls printed a listing: fresh boxes, same start


def test_unknown_sandbox_is_named():
    with pytest.raises(KeyError, match="test-dict-shell"):
        build_verifier("shell", sandbox="nope")
