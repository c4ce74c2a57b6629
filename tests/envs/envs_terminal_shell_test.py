"""The simulated shell on hand-worked states: outputs, resulting trees, equivalences."""

import os

import pytest

from pivotrl_jax.envs.terminal.fs import HOME, VirtualFS
from pivotrl_jax.envs.terminal.shell import Shell


def _ws() -> VirtualFS:
    """~/logs/{a.log, b.log, notes.txt, .hidden.log}, ~/archive/, ~/docs/{plan.txt, old/x.md}."""
    fs = VirtualFS.empty()
    for d in ("logs", "archive", "docs/old"):
        fs.mkdir(f"{HOME}/{d}", parents=True)
    fs.files |= {
        f"{HOME}/logs/a.log": "start ok\nerror disk\n",
        f"{HOME}/logs/b.log": "ok\n",
        f"{HOME}/logs/notes.txt": "Error here\n",
        f"{HOME}/logs/.hidden.log": "h\n",
        f"{HOME}/docs/plan.txt": "budget draft\nmeeting\n",
        f"{HOME}/docs/old/x.md": "old budget\n",
    }
    return fs


def _run(*lines: str, fs: VirtualFS | None = None):
    sh = Shell(fs or _ws())
    results = [sh.run(line) for line in lines]
    return sh.fs, results


def _rel_files(fs: VirtualFS) -> dict[str, str]:
    return {p[len(HOME) + 1 :]: t for p, t in fs.files.items()}


def test_glob_move_hand_worked():
    fs, (r,) = _run("mv logs/*.log archive/")
    assert r.ok and r.output == ""
    assert _rel_files(fs) == {
        "archive/a.log": "start ok\nerror disk\n",
        "archive/b.log": "ok\n",
        "logs/notes.txt": "Error here\n",
        "logs/.hidden.log": "h\n",  # `*` does not match a leading dot
        "docs/plan.txt": "budget draft\nmeeting\n",
        "docs/old/x.md": "old budget\n",
    }


# Each group: command sequences with one effect; different groups: different effects.
GROUPS = [
    [
        ["mv logs/*.log archive/"],
        ["mv logs/a.log logs/b.log archive"],
        ["mv ~/logs/b.log ./archive/", "mv /home/user/logs/a.log archive/a.log"],
        ["cd logs && mv *.log ../archive/ && cd"],
        ["cp logs/a.log logs/b.log archive/", "rm logs/a.log logs/b.log"],
    ],
    [["cp logs/*.log archive/"], ["cp logs/a.log archive && cp logs/b.log archive/b.log"]],
    [["mv logs/a.log archive/"], ["mv logs/a.log archive/a.log"]],
    [
        ["mkdir -p new/sub"],
        ["mkdir new new/sub"],
        ["mkdir new", "mkdir new/sub"],
        ["mkdir --parents ./new/sub/"],
    ],
    [["rm -r docs"], ["rm -rf docs"], ["rm -fr ~/docs"], ["rm -R docs/old && rm -r docs"]],
    [["rm -r docs/old"], ["rm -f docs/old/x.md && rmdir docs/old"]],
    [
        ["echo 'deadline' >> docs/plan.txt"],
        ['echo "deadline" >> /home/user/docs/plan.txt'],
        ["cd docs; echo deadline >> plan.txt; cd .."],
    ],
    [["echo deadline > docs/plan.txt"]],
    [["cp -r docs backup"], ["cp -R docs/ backup"], ["mkdir backup && cp -r docs/* backup/"]],
    [["ls"], ["ls -a logs"], ["grep -r budget docs"], ["find . -name '*.log'"], ["cat logs/b.log"]],
]


def _digest(commands):
    fs, results = _run(*commands)
    return fs.digest(), all(r.ok for r in results)


def test_equivalent_commands_reach_equal_states_and_others_do_not():
    digests = [[_digest(c) for c in group] for group in GROUPS]
    for group, found in zip(GROUPS, digests):
        assert all(ok for _, ok in found), group
        assert len({d for d, _ in found}) == 1, group
    firsts = [found[0][0] for found in digests]
    assert len(set(firsts)) == len(GROUPS)


@pytest.mark.parametrize(
    ("line", "output", "status"),
    [
        ("ls logs", "a.log\nb.log\nnotes.txt\n", 0),
        ("ls -a logs", ".\n..\n.hidden.log\na.log\nb.log\nnotes.txt\n", 0),
        ("ls logs/b.log docs", "logs/b.log\n\ndocs:\nold\nplan.txt\n", 0),
        ("ls *.zip", "ls: cannot access '*.zip': No such file or directory\n", 2),
        ("grep -r budget docs", "docs/old/x.md:old budget\ndocs/plan.txt:budget draft\n", 0),
        ("grep -rl budget docs/", "docs/old/x.md\ndocs/plan.txt\n", 0),
        ("grep -n error logs/a.log", "2:error disk\n", 0),
        ("grep -ic ERROR logs/a.log logs/notes.txt", "logs/a.log:1\nlogs/notes.txt:1\n", 0),
        ("grep -c error logs/b.log", "0\n", 1),
        ("grep -v ok logs/a.log", "error disk\n", 0),
        ("grep x logs", "grep: logs: Is a directory\n", 2),
        ("find docs", "docs\ndocs/old\ndocs/old/x.md\ndocs/plan.txt\n", 0),
        ("find . -name '*.md'", "./docs/old/x.md\n", 0),
        ("find ~/docs -type d", "/home/user/docs\n/home/user/docs/old\n", 0),
        ("wc -l logs/a.log", "2 logs/a.log\n", 0),
        ("cat logs/a.log | wc -l", "2\n", 0),
        ("cat logs/*.log | grep -c ok", "2\n", 0),
        ("head -n 1 docs/plan.txt", "budget draft\n", 0),
        ("tail -n 1 docs/plan.txt", "meeting\n", 0),
        ("sort -r docs/plan.txt", "meeting\nbudget draft\n", 0),
        ("cat nope", "cat: nope: No such file or directory\n", 1),
        ("cat nope || echo fallback", "cat: nope: No such file or directory\nfallback\n", 0),
        ("cat nope && echo never", "cat: nope: No such file or directory\n", 1),
        ("mkdir a/b", "mkdir: cannot create directory 'a/b': No such file or directory\n", 1),
        ("rm docs", "rm: cannot remove 'docs': Is a directory\n", 1),
        ("cp docs d2", "cp: -r not specified; omitting directory 'docs'\n", 1),
        (
            "mv logs/a.log logs/b.log docs/plan.txt",
            "mv: target 'docs/plan.txt' is not a directory\n",
            1,
        ),
        ("cd docs && pwd", "/home/user/docs\n", 0),
        ("cd nowhere", "cd: nowhere: No such file or directory\n", 1),
        ("frobnicate", "bash: frobnicate: command not found\n", 127),
        ("ls -z", "ls: invalid option -- 'z'\n", 2),
        ("echo -n hi", "hi", 0),
    ],
)
def test_outputs_hand_worked(line, output, status):
    _, (r,) = _run(line)
    assert (r.output, r.status) == (output, status)


def test_redirects_create_truncate_append_and_read():
    fs, results = _run(
        "echo one > f.txt", "echo two >> f.txt", "ls > list.txt", "wc -l < f.txt", "echo x > f.txt"
    )
    assert results[3].output == "2\n"
    assert fs.files[f"{HOME}/f.txt"] == "x\n"
    # the shell creates the target before `ls` runs, so the listing includes it
    assert fs.files[f"{HOME}/list.txt"] == "archive\ndocs\nf.txt\nlist.txt\nlogs\n"


def test_find_delete_and_failed_commands_leave_state():
    fs, (r,) = _run("find logs -name '*.log' -delete")
    assert r.ok and sorted(_rel_files(fs)) == ["docs/old/x.md", "docs/plan.txt", "logs/notes.txt"]
    before = _ws().digest()
    fs, _ = _run("rm nope", "mv missing archive/", "cat docs")
    assert fs.digest() == before


def test_moving_a_directory_into_itself_fails():
    fs, (r,) = _run("mv docs docs/old/")
    assert not r.ok and fs.digest() == _ws().digest()


def test_nothing_reaches_the_host(tmp_path):
    target = tmp_path / "escape.txt"
    fs, (r,) = _run(f"mkdir -p {tmp_path} && echo leak > {target} && rm -rf /")
    assert not target.exists()
    assert not os.path.exists(target)
    assert f"{target}" in fs.files or not r.ok


@pytest.mark.parametrize("pattern", ["(a|aa)*b", "(a+)+b", "(a)\\1", ".*.*.*x", "a+b+c+"])
def test_grep_refuses_patterns_that_can_backtrack_for_ages(pattern):
    _, (r,) = _run(f"grep -E '{pattern}' logs/a.log")
    assert (r.output, r.status) == ("grep: pattern too complex\n", 2)


def test_grep_stays_fast_on_long_lines():
    import time

    fs = _ws()
    fs.files[f"{HOME}/long.txt"] = ("a" * 5000 + "\n") * 3
    start = time.perf_counter()
    _, results = _run("grep -c '.*.*x' long.txt", "grep -cE 'er+or' logs/a.log", fs=fs)
    assert time.perf_counter() - start < 1.0
    assert [r.output for r in results] == ["0\n", "1\n"]
