"""benchmarks/paper_claims.py: its statistics against scipy, the matched-accuracy lookup, the
config overrides of the trade-off runs, and the report on a synthetic set of runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pc():
    spec = importlib.util.spec_from_file_location(
        "paper_claims", REPO / "benchmarks/paper_claims.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("values", [[0.1, 0.3, 0.2], [0.5, 0.52], [0.0, 0.1, 0.4, 0.2, 0.9]])
def test_mean_ci_is_the_student_t_interval(pc, values):
    got = pc.mean_ci(values)
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert got["mean"] == pytest.approx(np.mean(values))
    assert got["ci95"] == pytest.approx((hi - lo) / 2, rel=1e-3)
    assert pc.mean_ci([0.4]) == {"mean": 0.4, "ci95": 0.0, "n": 1}


def test_first_reaching_and_mean_curve(pc):
    a = [
        {"step": 4, "in_domain": 0.1, "ood": 0.5, "turns": 64, "seconds": 10},
        {"step": 8, "in_domain": 0.3, "ood": 0.4, "turns": 128, "seconds": 20},
    ]
    b = [
        {"step": 4, "in_domain": 0.3, "ood": 0.7, "turns": 32, "seconds": 12},
        {"step": 8, "in_domain": 0.5, "ood": 0.6, "turns": 96, "seconds": 22},
    ]
    m = pc.mean_curve([a, b])
    assert m[0] == {"step": 4, "in_domain": 0.2, "ood": 0.6, "turns": 48, "seconds": 11}
    assert pc.first_reaching(m, 0.4)["step"] == 8
    assert pc.first_reaching(m, 0.2)["step"] == 4
    assert pc.first_reaching(m, 0.41) is None


def test_tradeoff_overrides_copy_and_check_keys(pc):
    from pivotrl_jax import config as config_lib

    c = config_lib.load_config("configs/paper_claims.py:quick")
    d = pc.with_overrides(c, "rl.beta=0.05,rl.clip_low=0.1")
    assert (d.rl.beta, d.rl.clip_low, c.rl.beta) == (0.05, 0.1, 0.0)
    with pytest.raises(KeyError, match=r"rl\.nope"):
        pc.with_overrides(c, "rl.nope=1")
    assert pc.run_dir(Path("w"), "pivotrl", 0, "rl.beta=0.05").name == "pivotrl-s0-rlbeta005"


def test_summary_and_report_from_synthetic_runs(pc, tmp_path):
    from pivotrl_jax import config as config_lib

    c = config_lib.load_config(
        "configs/paper_claims.py:quick",
        ["seeds=(0, 1)", "methods=('pivotrl', 'e2e_rl')", "tradeoff=()"],
    )

    def ev(x, ood):
        return {"terminal": {"success": x}, "ood": {"success": ood}}

    def run(vals, turns):
        curve = [
            {"step": 2 * (i + 1), "in_domain": v, "ood": 0.5, "turns": t, "seconds": t / 10}
            for i, (v, t) in enumerate(zip(vals, turns))
        ]
        sig = {
            "group_reward_std_mean": 0.3,
            "zero_signal_fraction": 0.5,
            "per_iteration": [{"step": 1, "group_reward_std": 0.3, "zero_signal": 0.5}],
        }
        return {
            "curve": curve,
            "final": ev(vals[-1], 0.45),
            "rollout_turns": turns[-1],
            "train_seconds": turns[-1] / 10,
            "signal": sig,
        }

    runs = {
        ("pivotrl", 0, ""): run([0.3, 0.4], [64, 128]),
        ("pivotrl", 1, ""): run([0.3, 0.5], [64, 128]),
        ("e2e_rl", 0, ""): run([0.1, 0.3], [256, 512]),
        ("e2e_rl", 1, ""): run([0.2, 0.3], [256, 512]),
    }
    sel = {
        "pivotrl": {
            "candidates": 10,
            "kept": 4,
            "kept_fraction": 0.4,
            "zero_variance_fraction": 0.5,
        }
    }
    sel["pivotrl_exact"] = dict(sel["pivotrl"])
    s = pc.summarize(c, ev(0.1, 0.5), runs, sel, 80)
    piv, e2e = s["methods"]["pivotrl"], s["methods"]["e2e_rl"]
    assert piv["in_domain"]["mean"] == pytest.approx(0.45)
    assert piv["ood_change"]["mean"] == pytest.approx(-0.05)
    assert s["match_target_in_domain"] == pytest.approx(0.3)
    # PivotRL's mean curve is 0.3 at step 2 (64 turns); e2e reaches 0.3 at step 4 (512 turns)
    assert piv["to_match_e2e"] == {"step": 2, "turns": 64, "seconds": 6.4}
    assert e2e["to_match_e2e"]["turns"] == 512
    md = pc.report_markdown(c, s, "python benchmarks/paper_claims.py", 60.0)
    assert "| pivotrl | 45.0 ± " in md and "64 (step 2)" in md
    pc.plot(s, runs, tmp_path)
    for name in ("success_vs_turns.png", "tradeoff.png", "signal.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_benchmark_smoke_end_to_end_and_reuse(pc, tmp_path):
    wd, res = tmp_path / "pc", tmp_path / "results"
    argv = [
        "--config=configs/paper_claims.py:smoke",
        f"--config.workdir={wd}",
        f"--config.results_dir={res}",
    ]
    summary = pc.main(argv)
    c = summary["config"]
    b = c["budget"]
    assert set(summary["methods"]) == set(c["methods"]) and len(c["methods"]) == 5
    for name, m in summary["methods"].items():
        run = json.loads((wd / "runs" / f"{name}-s0" / "result.json").read_text())["result"]
        assert [p["step"] for p in run["curve"]] == list(range(1, b["iterations"] + 1))
        fin = run["final"]
        want = (fin["terminal"]["success"] + fin["tool_use"]["success"]) / 2
        assert m["in_domain"]["mean"] == pytest.approx(want)
        if name in ("pivotrl", "pivotrl_random", "pivotrl_exact"):
            # one turn per sample: P x G per iteration
            assert run["rollout_turns"] == b["iterations"] * b["prompts_per_step"] * b["group_size"]
        elif name == "e2e_rl":
            # episodes last 1..max_turns turns
            lo = b["iterations"] * c["rl"]["e2e_prompts_per_step"] * b["group_size"]
            assert lo <= run["rollout_turns"] <= lo * c["eval"]["max_turns"]
        else:
            assert run["rollout_turns"] == 0
    assert [t["overrides"] for t in summary["tradeoff"]].count("rl.beta=0.05") == 1
    for name in ("results.json", "report.md", "success_vs_turns.png", "tradeoff.png"):
        assert (res / name).exists()
    assert "| pivotrl |" in (res / "report.md").read_text()
    # Held-out turn acceptance of pi_0 = `pivotrl profile` with one greedy sample per turn.
    from pivotrl_jax import cli

    prof = tmp_path / "prof"
    argv_profile = [
        "profile",
        "--config=configs/profile.py:envs",
        "--candidates",
        str(wd / "heldout"),
        "--output",
        str(prof),
        f"--config.model_dir={wd / 'base' / 'model'}",
        "--config.profile.k=1",
        "--config.profile.temperature=0.0",
        f"--config.profile.max_new_tokens={c['eval']['max_new_tokens']}",
        "--noprogress",
    ]
    assert cli.main(argv_profile) == 0
    mean = json.loads(next(prof.glob("summary-*.json")).read_text())["mean_reward"]
    assert summary["base"]["turn_acceptance"] == pytest.approx(mean)
    for name, m in summary["methods"].items():
        assert 0.0 <= m["turn_acceptance"]["mean"] <= 1.0, name
    # A second run reuses every stage and run.
    again = pc.main(argv)
    assert again["methods"] == summary["methods"]
    assert again["seconds"] < summary["seconds"] / 2
