"""Extraction on hand-built trajectories: which turns become candidates, with what state."""

import collections

import pytest
from data_samples import traj_plain, traj_shell, traj_weather, write_jsonl

from pivotrl_jax.data import extraction, readers, records
from pivotrl_jax.data.openai_chat import parse_trajectory
from pivotrl_jax.data.turns import TurnOptions, trajectory_candidates


def _extract(path, out, **turns):
    m = extraction.extract([path], out, extraction.ExtractOptions(turns=TurnOptions(**turns)))
    return m, list(records.read_records(out, "candidates"))


def test_every_assistant_turn_is_a_candidate(sft_file, tmp_path):
    m, recs = _extract(sft_file, tmp_path / "out")
    # w1: parallel, message, tool_call, message; s1: call, call, message; plain: 2 messages.
    assert m["candidates"] == 9 == len(recs)
    assert m["counts"] == {
        "default": {"message": 2},
        "shell": {"message": 1, "tool_call": 2},
        "weather": {"message": 2, "parallel": 1, "tool_call": 1},
    }
    assert m["skipped_turns"] == {} and m["skipped_rows"] == {}
    ids = [r["id"] for r in recs]
    assert ids[:7] == ["w1:0", "w1:1", "w1:2", "w1:3", "s1:0", "s1:1", "s1:2"]
    plain_id = recs[7]["trajectory_id"]
    assert ids[7:] == [f"{plain_id}:0", f"{plain_id}:1"]
    by_id = {r["id"]: r for r in recs}
    # State = every message before the turn; the action is the turn itself.
    w = traj_weather()["messages"]
    assert [x["role"] for x in by_id["w1:2"]["messages"]] == [x["role"] for x in w[:7]]
    assert by_id["w1:2"]["messages"][-1]["content"] == "Try Oslo again."
    assert by_id["w1:2"]["expected_action"]["content"] == "Retrying."
    parallel = by_id["w1:0"]["expected_action"]["tool_calls"]
    assert [(c["id"], c["function"]["arguments"]) for c in parallel] == [
        ("a", {"city": "Paris"}),
        ("b", {"city": "Oslo"}),
    ]
    assert by_id["w1:0"]["kind"] == "parallel" and len(by_id["w1:0"]["messages"]) == 2
    assert by_id["s1:1"]["expected_action"]["reasoning_content"] == "Use sudo."
    assert by_id["s1:0"]["tools"] == traj_shell()["tools"]
    assert by_id["w1:3"]["verifier"] == "tool_call" and by_id["w1:3"]["domain"] == "weather"
    assert all(r["schema_version"] == 1 and r["prompt_ids"] is None for r in recs)


def test_drop_tool_errors_and_kinds(sft_file, tmp_path):
    m, recs = _extract(sft_file, tmp_path / "a", drop_tool_errors=True)
    # w1:0 (Oslo '{"error": ...}') and s1:0 ('Error: permission denied') go.
    assert m["skipped_turns"] == {"tool_error": 2}
    assert "w1:0" not in {r["id"] for r in recs} and "s1:0" not in {r["id"] for r in recs}
    assert m["candidates"] == 7

    m, recs = _extract(sft_file, tmp_path / "b", kinds=("tool_call",))
    assert [r["id"] for r in recs] == ["w1:2", "s1:0", "s1:1"]
    assert m["skipped_turns"] == {"kind_message_not_kept": 5, "kind_parallel_not_kept": 1}


def test_message_downsampling_is_by_id_not_order(tmp_path):
    rows = [dict(traj_plain(), id=f"p{i}") for i in range(40)]
    fwd = write_jsonl(tmp_path / "fwd.jsonl", rows)
    rev = write_jsonl(tmp_path / "rev.jsonl", rows[::-1])
    _, none_kept = _extract(fwd, tmp_path / "z", message_fraction=0.0)
    assert none_kept == []
    m, a = _extract(fwd, tmp_path / "a", message_fraction=0.5)
    _, b = _extract(rev, tmp_path / "b", message_fraction=0.5)
    _, c = _extract(fwd, tmp_path / "c", message_fraction=0.8)
    kept_a, kept_c = {r["id"] for r in a}, {r["id"] for r in c}
    assert kept_a == {r["id"] for r in b}
    assert kept_a < kept_c  # a larger fraction keeps a superset
    assert 20 <= len(kept_a) <= 60 and m["skipped_turns"]["message_downsampled"] == 80 - len(kept_a)


def test_domain_tag_and_verifier_per_domain(sft_file):
    opts = TurnOptions(verifiers={"shell": "similarity"}, default_verifier="tool_call")
    report = readers.ReadReport()
    got = collections.Counter()
    for t in readers.read_inputs([sft_file], report=report):
        for c in trajectory_candidates(t, opts, collections.Counter()):
            got[(c.domain, c.verifier)] += 1
    assert got == {
        ("weather", "tool_call"): 4,
        ("shell", "similarity"): 3,
        ("default", "tool_call"): 2,
    }
    forced = TurnOptions(domain="tau", verifiers={"tau": "exact"})
    cands = trajectory_candidates(
        parse_trajectory(traj_shell(), "f", 1), forced, collections.Counter()
    )
    assert {(c.domain, c.verifier) for c in cands} == {("tau", "exact")}


def test_ids_are_stable_across_runs(sft_file, tmp_path):
    _, a = _extract(sft_file, tmp_path / "a")
    _, b = _extract(sft_file, tmp_path / "b")
    assert a == b


def test_bad_options_raise():
    with pytest.raises(ValueError, match="unknown kinds"):
        TurnOptions(kinds=("tool_call", "calls"))
    with pytest.raises(ValueError, match="message_fraction"):
        TurnOptions(message_fraction=1.5)
