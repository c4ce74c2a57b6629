"""kill -9 during `pivotrl extract` and `pivotrl profile`, then the same command again: the
outputs equal an uninterrupted run record for record, and after every kill a reader sees either
the whole output or a clean refusal (never a half-written shard set).

Kill points (pivotrl_jax/faults.py) cover each row read, each shard closed, between shard
renames, between removing an old set and renaming the new one, each profiling chunk journaled,
the summary write and the journal removal; a few external SIGKILLs land at random times.
"""

import json

import pytest
from crash import base_env, kill_and_resume, planned_points, reference

from pivotrl_jax.data import records as records_io
from pivotrl_jax.errors import InputError
from pivotrl_jax.pivots.profile import read_profiled

pytestmark = pytest.mark.slow

EXTRACT_FAST = ["records.renamed@5"]  # a partial set: refused, then replaced
EXTRACT_LONG = [
    "extract.row@1",
    "extract.row@17",
    "records.shard_closed@2",
    "records.shard_closed@11",
    "records.renamed@1",
    "records.renamed@7",
    "records.old_removed@1",
    "records.old_removed@6",
    "records.renamed@12",
    "extract.before_manifest@1",
    "atomic.before_replace@1",  # the manifest
    "atomic.before_replace@2",  # the resolved config
]
PROFILE_FAST = ["journal.appended@3"]  # 3 of 12 chunks journaled
PROFILE_LONG = [
    "atomic.before_replace@1",  # the resolved config, before any work
    "profile.chunk_start@2",
    "journal.appended@1",
    "journal.appended@4",
    "profile.chunk_start@3",
    "journal.appended@3",
    "records.shard_closed@2",
    "profile.before_commit@1",
    "records.renamed@2",
    "records.old_removed@1",
    "profile.before_summary@1",
    "profile.summary_written@1",
]


def extract_argv(assets, out):
    return [
        "extract",
        "--input",
        str(assets / "sft.jsonl"),
        "--output",
        str(out),
        "--tokenizer",
        str(assets / "model"),
        "--config.default_verifier=test_parity",
        "--config.shard_size=4",
    ]


def profile_argv(assets, out):
    return [
        "profile",
        "--candidates",
        str(assets / "cands"),
        "--output",
        str(out),
        f"--config.model_dir={assets / 'model'}",
        "--noprogress",
        "--config.profile.k=2",
        "--config.profile.max_new_tokens=6",
        "--config.profile.candidates_per_call=4",
        "--config.profile.seed=3",
        "--config.shard_size=8",
    ]


def _manifest(out):
    m = json.loads((out / "manifest.json").read_text())
    m.pop("elapsed_s")
    return m


RUN_ONLY = ("seconds_this_run", "engine_seconds_this_run", "verify_seconds_this_run",
            "generated_tokens_this_run", "non_engine_time_fraction", "verifier")  # fmt: skip


def _summary(out):
    """The summary without what describes only the last process (wall times, this run's
    verifier timings), and the verifier outcome counts over every record."""
    s = json.loads((out / "summary-p00000-of-00001.json").read_text())
    outcomes = {k: s["verifier"][k] for k in ("count", "reasons", "mean_reward")}
    return {k: v for k, v in s.items() if k not in RUN_ONLY}, outcomes


def _check_extract(plan, assets, tmp_path, random_kills=0):
    env = base_env(assets / "jax-cache")
    ref_dir, out = tmp_path / "ref", tmp_path / "killed"
    _, passed = reference(extract_argv(assets, ref_dir), env, tmp_path / "trace.txt")
    want = list(records_io.read_records(ref_dir, prefix="candidates"))
    assert len(want) == 48

    def readable():
        if not out.exists() or not records_io.shard_paths(out, "candidates", check_complete=False):
            return
        try:
            got = list(records_io.read_records(out, prefix="candidates"))
        except InputError as e:  # an interrupted commit: refused, never half read
            assert e.reason == "incomplete_shards", e
            return
        assert got == want

    window = (1.0, 4.0)
    outcomes = kill_and_resume(extract_argv(assets, out), env, plan, between=readable,
                               random_kills=random_kills, random_window_s=window)  # fmt: skip
    assert planned_points(plan) <= passed | {"records.old_removed"}
    assert list(records_io.read_records(out, prefix="candidates")) == want
    assert _manifest(out) == _manifest(ref_dir)
    assert json.loads((out / "config.json").read_text()) == json.loads(
        (ref_dir / "config.json").read_text()
    )
    assert not list(out.glob(".candidates-*"))  # no temporary shard left behind
    return outcomes


def _check_profile(plan, assets, tmp_path, random_kills=0):
    env = base_env(assets / "jax-cache")
    ref_dir, out = tmp_path / "ref", tmp_path / "killed"
    _, passed = reference(profile_argv(assets, ref_dir), env, tmp_path / "trace.txt")
    want = read_profiled(ref_dir)
    assert [r["id"] for r in want] == sorted(
        r["id"] for r in records_io.read_records(assets / "cands", prefix="candidates")
    )

    def readable():
        try:
            got = read_profiled(out)
        except (InputError, ValueError) as e:  # unfinished: refused, never half read
            assert "unfinished" in str(e) or "no finished" in str(e) or "incomplete" in str(e)
            return
        assert got == want

    window = (4.0, 12.0)
    outcomes = kill_and_resume(profile_argv(assets, out), env, plan, between=readable,
                               random_kills=random_kills, random_window_s=window)  # fmt: skip
    assert planned_points(plan) <= passed | {"records.old_removed"}
    got = read_profiled(out)
    assert [r["id"] for r in got] == [r["id"] for r in want]  # none lost or duplicated
    assert got == want
    assert _summary(out) == _summary(ref_dir)
    assert not list(out.glob("journal-*"))
    return outcomes


def test_extract_killed_and_resumed(assets, tmp_path):
    _check_extract(EXTRACT_FAST, assets, tmp_path)


def test_profile_killed_and_resumed(assets, tmp_path):
    _check_profile(PROFILE_FAST, assets, tmp_path)


@pytest.mark.long
def test_extract_killed_at_many_points(assets, tmp_path):
    outcomes = _check_extract(EXTRACT_LONG, assets, tmp_path, random_kills=3)
    assert sum(o.killed for o in outcomes) >= len(EXTRACT_LONG)


@pytest.mark.long
def test_profile_killed_at_many_points(assets, tmp_path):
    outcomes = _check_profile(PROFILE_LONG, assets, tmp_path, random_kills=3)
    assert sum(o.killed for o in outcomes) >= len(PROFILE_LONG)
