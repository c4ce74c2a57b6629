"""A short end-to-end run of the demo pipeline (configs/demo.py:smoke) on real files."""

import json

import pytest

from pivotrl_jax import cli


@pytest.mark.slow
def test_demo_smoke_end_to_end_and_reuse(tmp_path, capsys):
    wd = tmp_path / "demo"
    argv = ["demo", "--config=configs/demo.py:smoke", f"--config.workdir={wd}", "--noprogress"]
    assert cli.main(argv) == 0
    report = json.loads((wd / "report.json").read_text())
    table = (wd / "report.txt").read_text()
    # The report counts what the stages wrote.
    assert report["pivots"]["candidates"] == sum(
        json.loads(p.read_text())["candidates"] for p in (wd / "profiled").glob("summary-*.json")
    )
    assert report["rollout_turns"]["profile"] == report["pivots"]["candidates"] * 4  # K = 4
    assert report["rollout_turns"]["train"] == 2 * 2 * 2
    for name in ("base", "pivotrl"):
        ev = report["eval"][name]
        assert ev["terminal"]["n"] == 3 and ev["tool_use"]["n"] == 3 and ev["ood"]["n"] == 4
        assert 0.0 <= ev["ood"]["success"] <= 1.0
    assert "terminal success" in table and "out-of-domain accuracy" in table
    assert (wd / "pivot_mean_reward_hist.png").read_bytes()[:4] == b"\x89PNG"
    data = report["data"]["kinds"]
    assert set(data) == {"terminal", "tool_use"}
    for d in data.values():  # absent kinds never reach pi_0's pretraining data
        assert not set(d["absent"]) & set(d["clean"]) and not set(d["absent"]) & set(d["noisy"])

    # A second run reuses every stage.
    assert cli.main(argv) == 0
    again = json.loads((wd / "report.json").read_text())
    assert set(again["stages_reused"]) >= {"data", "base", "extract", "profile", "select", "train"}
    assert again["eval"] == report["eval"]
