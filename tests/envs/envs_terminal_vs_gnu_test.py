"""The simulated shell against GNU bash and coreutils, the independent reference.

Only the fixed command lines below run on the host, inside a fresh temporary directory, and only
to produce reference outputs; nothing a model writes is ever passed to a subprocess. Skipped
where bash or GNU coreutils are missing. Known divergences left out: `pwd` (the simulator's home
is /home/user) and `cp -r dir dir/sub` (GNU copies part of the tree before it fails).
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pivotrl_jax.envs.terminal.fs import HOME, VirtualFS
from pivotrl_jax.envs.terminal.shell import Shell


def _gnu() -> bool:
    if shutil.which("bash") is None or shutil.which("ls") is None:
        return False
    version = subprocess.run(["ls", "--version"], capture_output=True, text=True)
    return "GNU" in version.stdout


pytestmark = pytest.mark.skipif(not _gnu(), reason="needs bash and GNU coreutils")

FILES = {
    "logs/a.log": "start ok\nerror disk\n",
    "logs/b.log": "ok\n",
    "logs/notes.txt": "Error here\n",
    "logs/.hidden.log": "h\n",
    "docs/plan.txt": "budget draft\nmeeting\n",
    "docs/old/x.md": "old budget\n",
}
DIRS = ["logs", "archive", "docs/old", "empty"]
CASES = [
    "ls",
    "ls logs",
    "ls -a logs",
    "ls logs docs",
    "ls logs/b.log docs",
    "ls *.zip",
    "ls -A logs",
    "mv logs/*.log archive/",
    "mv logs/a.log logs/b.log archive",
    "mv logs archive",
    "mv logs/a.log x.log",
    "mv logs/a.log docs/plan.txt",
    "mv docs docs/old",
    "mv logs/a.log nowhere/x",
    "mv a b c",
    "mv logs/a.log archive/ && ls archive",
    "cp logs/a.log archive",
    "cp -r docs backup",
    "cp -r docs archive",
    "cp docs x",
    "cp logs/*.log archive/",
    "cp -r docs/ backup2",
    "mkdir backup && cp -r docs/* backup/",
    "rm docs",
    "rm -r docs",
    "rm -rf docs nope",
    "rm nope",
    "rm -f nope",
    "rm -r docs/old && rmdir docs",
    "rmdir empty",
    "rmdir docs",
    "mkdir a/b",
    "mkdir -p a/b",
    "mkdir logs",
    "mkdir -p logs",
    "mkdir new new/sub",
    "touch logs/b.log z.txt",
    "touch nowhere/x",
    "echo hi > f.txt",
    "echo hi >> logs/b.log",
    "echo -n hi",
    "echo 'a  b' \"c d\" e",
    "ls > list.txt; cat list.txt",
    "echo x > logs",
    "cat logs/a.log logs/b.log",
    "cat logs",
    "cat nope",
    "cat < docs/plan.txt",
    "cat logs/a.log | wc -l",
    "wc -l logs/a.log",
    "wc -l logs/a.log logs/b.log",
    "wc -w docs/plan.txt",
    "wc logs/a.log",
    "grep ok logs/a.log",
    "grep -n error logs/a.log",
    "grep -c ok logs/a.log logs/b.log",
    "grep -i ERROR logs/notes.txt logs/a.log",
    "grep -l ok logs/a.log logs/b.log logs/notes.txt",
    "grep -v ok logs/a.log",
    "grep -w ok logs/a.log",
    "grep x logs",
    "grep -c zzz logs/b.log",
    "grep -rl budget docs",
    "grep -r budget docs",
    "grep -rn budget docs/",
    "grep -ril BUDGET .",
    "grep -h ok logs/a.log logs/b.log",
    "find docs",
    "find . -name '*.md'",
    "find docs -type f",
    "find logs -name '*.log'",
    "find . -maxdepth 1 -type d",
    "find nope",
    "find logs -name '*.log' -delete",
    "find . -type f -name '*.txt'",
    "head -n 1 docs/plan.txt",
    "tail -n 1 docs/plan.txt",
    "head -n1 logs/a.log",
    "sort docs/plan.txt",
    "sort -r docs/plan.txt",
    "cat logs/*.log | sort",
    "cat logs/*.log | sort -u",
    "cd docs && ls",
    "cd nowhere",
    "cd docs/plan.txt",
    "cat nope || echo fallback",
    "cat nope && echo never",
    "false_cmd_xyz",
    "ls; ls docs",
    "echo a | grep a | wc -l",
]


def _real(line: str, root) -> tuple[int, str, str, tuple]:
    for d in DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    for p, text in FILES.items():
        (root / p).write_text(text)
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C"}
    r = subprocess.run(["bash", "-c", line], cwd=root, capture_output=True, text=True, env=env)
    dirs, files = set(), {}
    for here, _, names in os.walk(root):
        rel = os.path.relpath(here, root)
        if rel != ".":
            dirs.add(rel)
        for name in names:
            files[os.path.normpath(os.path.join(rel, name))] = (Path(here) / name).read_text()
    return r.returncode, r.stdout, r.stderr, (dirs, files)


def _simulated(line: str):
    fs = VirtualFS.empty()
    for d in DIRS:
        fs.mkdir(f"{HOME}/{d}", parents=True)
    for p, text in FILES.items():
        fs.files[f"{HOME}/{p}"] = text
    result = Shell(fs).run(line)
    dirs = {d[len(HOME) + 1 :] for d in fs.dirs if d.startswith(HOME + "/")}
    files = {p[len(HOME) + 1 :]: t for p, t in fs.files.items()}
    return result, (dirs, files)


@pytest.mark.parametrize("line", CASES)
def test_same_status_tree_and_output_as_gnu(line, tmp_path):
    status, stdout, stderr, real_tree = _real(line, tmp_path)
    result, sim_tree = _simulated(line)
    assert (status == 0) == result.ok
    assert sim_tree == real_tree
    if not stderr:  # the simulator interleaves stderr; compare outputs where there is none
        if "find" in line or "grep -r" in line:
            # GNU walks directories in on-disk order, the simulator in sorted order
            assert sorted(result.output.splitlines()) == sorted(stdout.splitlines())
        else:
            assert result.output == stdout
