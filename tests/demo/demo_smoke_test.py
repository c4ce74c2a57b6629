"""A short end-to-end run of the demo pipeline (configs/demo.py:smoke) on real files."""

import importlib.util
import json

import pytest

from pivotrl_jax import cli

MODELS = ("pi_0", "sft", "pivotrl")


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
    # The keys scripts read, in percent, recomputed from the per-item results.
    items = {m: json.loads((wd / "eval" / f"{m}.json").read_text()) for m in MODELS}
    turns = report["heldout_turn_acceptance"]
    n = turns["pi_0"]["n"]
    assert n == len(items["pi_0"]["turns"]) > 0
    for m in MODELS:
        assert turns[m]["mean"] == pytest.approx(100 * sum(items[m]["turns"]) / n)
        for d in ("terminal", "tool_use"):
            assert report["episode_success"][m][d]["n"] == 3
        assert report["ood_accuracy"][m]["n"] == 4
        by_kind = report["ood_accuracy_by_kind"]
        assert sum(by_kind[k][m]["n"] for k in by_kind) == 4
        assert sum(by_kind[k][m]["mean"] * by_kind[k][m]["n"] for k in by_kind) == pytest.approx(
            400 * report["ood_accuracy"][m]["mean"] / 100
        )
    for m in ("sft", "pivotrl"):
        delta = turns[m]["delta_vs_pi_0"]
        diff = [a - b for a, b in zip(items[m]["turns"], items["pi_0"]["turns"])]
        assert delta["mean"] == pytest.approx(100 * sum(diff) / n)
        assert delta["ci95"][0] <= delta["mean"] <= delta["ci95"][1]
    for d in ("terminal", "tool_use"):
        assert report["oracle_reward"][d] >= 0.95 and report["control_reward"][d] <= 0.05
    assert report["seconds"]["total"] > 0
    assert 0 < report["peak_rss_gib"] < 24  # ru_maxrss of the demo process, in GiB
    assert set(report["seconds_when_made"]) >= {"data", "base", "train", "eval_pivotrl"}
    assert "held-out turn acceptance" in table and "out-of-domain accuracy" in table
    assert (wd / "pivot_mean_reward_hist.png").read_bytes()[:4] == b"\x89PNG"
    data = report["data"]["kinds"]
    assert set(data) == {"terminal", "tool_use"}
    for d in data.values():  # absent kinds never reach pi_0's pretraining data
        assert not set(d["absent"]) & set(d["clean"]) and not set(d["absent"]) & set(d["noisy"])

    # pi_0's turn acceptance is what `pivotrl profile` measures with one greedy sample per turn.
    out = tmp_path / "greedy"
    assert (
        cli.main(
            [
                "profile",
                "--config=configs/profile.py:greedy,envs",
                "--candidates",
                str(wd / "heldout"),
                "--output",
                str(out),
                f"--config.model_dir={wd / 'base' / 'model'}",
                "--config.profile.max_new_tokens=8",
                "--noprogress",
            ]
        )
        == 0
    )
    from pivotrl_jax.data import records as records_io

    greedy = [
        r["profile"]["mean"]
        for r in records_io.read_records(out, prefix="profiled-p00000-of-00001")
    ]
    assert turns["pi_0"]["mean"] == pytest.approx(100 * sum(greedy) / len(greedy))

    # benchmarks/ood_lead_in.py asks the demo's out-of-domain questions again, outside the
    # episode runner: its free replies score what the demo reported.
    spec = importlib.util.spec_from_file_location("ood_lead_in", "benchmarks/ood_lead_in.py")
    ood_lead_in = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ood_lead_in)
    lead = ood_lead_in.main(["--config=configs/demo.py:smoke", f"--config.workdir={wd}"])
    assert lead["questions"] == 4
    for m in MODELS:
        assert lead["free"]["all"][m]["mean"] == pytest.approx(report["ood_accuracy"][m]["mean"])
        assert 0 <= lead["lead_in_replies"][m] <= 4

    # A second run reuses every stage.
    assert cli.main(argv) == 0
    again = json.loads((wd / "report.json").read_text())
    assert set(again["stages_reused"]) >= {"data", "base", "extract", "profile", "select", "train"}
    assert set(again["stages_reused"]) >= {"sft", "heldout", "eval_pi_0", "eval_pivotrl"}
    assert again["heldout_turn_acceptance"] == report["heldout_turn_acceptance"]
    assert again["seconds_when_made"] == report["seconds_when_made"]
