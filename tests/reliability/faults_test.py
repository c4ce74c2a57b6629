"""The fault-injection hook itself, and an exhaustive kill of the record-shard commit and the
profiling journal: a kill at every point they pass (small processes, a few seconds in all)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from crash import REPO

from pivotrl_jax import faults
from pivotrl_jax.data import records
from pivotrl_jax.errors import InputError
from pivotrl_jax.pivots.journal import Journal


def test_parse():
    assert faults.parse("a.b@3, c@1+0.25,d") == (
        faults.Fault("a.b", 3),
        faults.Fault("c", 1, 0.25),
        faults.Fault("d", 1),
    )
    assert str(faults.Fault("c", 2, 0.5)) == "c@2+0.5"
    for bad in ("a@0", "a@x", "a@1+", "a b@1", "@2", "a@1+-1"):
        with pytest.raises(ValueError, match="name@count"):
            faults.parse(bad)


def _python(code: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_kill_at_the_planned_pass_and_trace(tmp_path):
    code = """
        from pivotrl_jax import faults
        for i in range(5):
            print(i, flush=True)
            faults.point("loop")
    """
    trace = tmp_path / "trace.txt"
    out = _python(code, {"PIVOTRL_FAULT": "loop@3", "PIVOTRL_FAULT_TRACE": str(trace)})
    assert out.returncode == -signal.SIGKILL
    assert out.stdout.split() == ["0", "1", "2"]
    assert trace.read_text().splitlines() == ["loop"] * 3
    out = _python(code, {"PIVOTRL_FAULT": None, "PIVOTRL_FAULT_TRACE": None})
    assert out.returncode == 0 and out.stdout.split() == ["0", "1", "2", "3", "4"]


def test_delayed_kill_lands_later(tmp_path):
    code = """
        import time
        from pivotrl_jax import faults
        faults.point("start")
        for i in range(100):
            print(i, flush=True)
            time.sleep(0.02)
    """
    start = time.monotonic()
    out = _python(code, {"PIVOTRL_FAULT": "start@1+0.3"})
    assert out.returncode == -signal.SIGKILL
    assert 0.25 < time.monotonic() - start < 10
    assert 5 <= len(out.stdout.split()) < 100


WRITE = """
    from pivotrl_jax.data import records
    recs = [{{"id": "{tag}" + str(i), "x": [i] * 3}} for i in range({n})]
    records.write_records({out!r}, recs, shard_size=2, prefix="candidates")
"""


def _write(out, n, tag, fault=None, trace=None):
    env = {"PIVOTRL_FAULT": fault, "PIVOTRL_FAULT_TRACE": str(trace) if trace else None}
    return _python(WRITE.format(out=str(out), n=n, tag=tag), env)


def test_shard_commit_killed_at_every_point_is_never_read_mixed(tmp_path):
    """An old set (6 records, 3 shards) is overwritten by a new one (9 records, 5 shards): a kill
    at each pass of each point leaves the old set, the new set, no set, or a refused incomplete
    one; never a set that reads whole but mixes the two."""
    trace = tmp_path / "trace.txt"
    probe = tmp_path / "probe"
    old = [{"id": f"old{i}", "x": [i] * 3} for i in range(6)]
    new = [{"id": f"new{i}", "x": [i] * 3} for i in range(9)]
    records.write_records(probe, old, shard_size=2, prefix="candidates")
    assert _write(probe, 9, "new", trace=trace).returncode == 0
    points = [p for p in trace.read_text().splitlines() if p.startswith("records.")]
    assert points.count("records.old_removed") == 3 and points.count("records.renamed") == 5
    seen = set()
    for name in sorted(set(points)):
        for count in range(1, points.count(name) + 1):
            out = tmp_path / f"{name}-{count}"
            records.write_records(out, old, shard_size=2, prefix="candidates")
            killed = _write(out, 9, "new", fault=f"{name}@{count}")
            assert killed.returncode == -signal.SIGKILL, killed.stderr
            try:
                got = list(records.read_records(out, prefix="candidates"))
                assert got in (old, new, [])  # [] : every old shard gone, no new one yet
                seen.add({0: "absent", 6: "old", 9: "new"}[len(got)])
            except InputError as e:
                assert e.reason == "incomplete_shards"
                seen.add("refused")
            records.write_records(out, new, shard_size=2, prefix="candidates")  # again
            assert list(records.read_records(out, prefix="candidates")) == new
            assert not list(out.glob(".candidates-*"))
    assert seen == {"old", "new", "absent", "refused"}


def test_damaged_shards_are_refused_with_their_name(tmp_path):
    paths = records.write_records(tmp_path, [{"id": str(i)} for i in range(5)], shard_size=2)
    data = paths[1].read_bytes()
    for damaged in (data[: len(data) // 2], data[:100] + b"\xff" + data[101:], b"", b"x" * 10):
        paths[1].write_bytes(damaged)
        with pytest.raises(InputError, match="damaged record shard") as e:
            list(records.read_records(tmp_path))
        assert e.value.path == str(paths[1])


def test_journal_killed_after_every_unit(tmp_path):
    code = """
        from pivotrl_jax.pivots.journal import Journal
        with Journal({path!r}) as j:
            for unit in range(6):
                if unit not in j.done:
                    j.append(unit, {{"unit": unit, "rows": [unit] * unit}})
    """
    for count in range(1, 7):
        path = tmp_path / f"journal-{count}.jsonl"
        out = _python(code.format(path=str(path)), {"PIVOTRL_FAULT": f"journal.appended@{count}"})
        assert out.returncode == -signal.SIGKILL
        with open(path, "ab") as f:
            f.write(b'{"unit": 99, "payload": [1, 2')  # and a torn line on top
        with Journal(path) as j:
            assert sorted(j.done) == list(range(count))
            assert [j.read(u)["rows"] for u in range(count)] == [[u] * u for u in range(count)]
        assert _python(code.format(path=str(path)), {}).returncode == 0
        with Journal(path) as j:
            assert sorted(j.done) == list(range(6))


def test_a_server_dies_with_the_process_that_started_it(tmp_path):
    """`server.start` wraps the server command so the kernel kills it when the starter dies:
    here the starter runs `sleep 600` that way and is then killed with -9."""
    code = f"""
        import os, subprocess, sys, time
        from pivotrl_jax.rollout.server import _DIE_WITH_PARENT
        child = subprocess.Popen([sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()),
                                  "sleep", "600"], start_new_session=True)
        open({str(tmp_path / "pid")!r}, "w").write(str(child.pid))
        time.sleep(600)
    """
    starter = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                               env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    pid_file = tmp_path / "pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the wrapper has exec'd into sleep
    child = int(pid_file.read_text())
    assert Path(f"/proc/{child}/cmdline").read_bytes().startswith(b"sleep")
    starter.send_signal(signal.SIGKILL)
    starter.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        try:  # reaped by init once dead; a zombie counts as dead
            if Path(f"/proc/{child}/stat").read_text().split(")")[1].split()[0] == "Z":
                break
        except OSError:
            break
        time.sleep(0.05)
    alive = Path(f"/proc/{child}/stat").exists() and (
        Path(f"/proc/{child}/stat").read_text().split(")")[1].split()[0] != "Z"
    )
    assert not alive
