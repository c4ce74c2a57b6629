"""benchmarks/paper_claims.py: the accuracy-level lookup, the sweep's config overrides, the
summary, report and plots on a synthetic set of runs, and the smoke variant end to end."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pc():
    spec = importlib.util.spec_from_file_location(
        "paper_claims", REPO / "benchmarks/paper_claims.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_first_reaching_and_mean_curve(pc):
    a = [
        {"step": 4, "turn_acceptance": 10.0, "turns": 64, "seconds": 10},
        {"step": 8, "turn_acceptance": 30.0, "turns": 128, "seconds": 20},
    ]
    b = [
        {"step": 4, "turn_acceptance": 30.0, "turns": 32, "seconds": 12},
        {"step": 8, "turn_acceptance": 50.0, "turns": 96, "seconds": 22},
    ]
    m = pc.mean_curve([a, b])
    assert m[0] == {"step": 4, "turn_acceptance": 20.0, "turns": 48, "seconds": 11}
    assert pc.first_reaching(m, 40.0)["step"] == 8
    assert pc.first_reaching(m, 20.0)["step"] == 4
    assert pc.first_reaching(m, 41.0) is None


def test_claim_verdicts_follow_the_interval(pc):
    from pivotrl_jax import config as config_lib

    c = config_lib.load_config(
        "configs/paper_claims.py:smoke",
        ["seeds=(0, 1, 2)", "methods=('sft', 'pivotrl')", "sweep=()", "domains=('terminal',)"],
    )
    base = _items([0] * 10, [0] * 10, [1] * 10)

    def final(turns_right, ood_right):
        return {"final": _items([1] * turns_right + [0] * (10 - turns_right), [0] * 10,
                                [1] * ood_right + [0] * (10 - ood_right))}  # fmt: skip

    runs = {
        ("sft", 0, ""): final(2, 10), ("sft", 1, ""): final(2, 10), ("sft", 2, ""): final(2, 10),
        # PivotRL - SFT turns: +30, +40, +50 points (mean 40, t-interval 40 +- 24.8)
        ("pivotrl", 0, ""): final(5, 9), ("pivotrl", 1, ""): final(6, 10),
        ("pivotrl", 2, ""): final(7, 10),
    }  # fmt: skip
    got = {k["claim"]: k for k in pc.claims(c, base, runs)}
    turns = got["PivotRL's held-out turn acceptance is above SFT's"]
    assert turns["difference"] == pytest.approx(40.0)
    half = 4.302652729911275 * 10.0 / 3**0.5  # t_{0.975, 2} * sd / sqrt(n)
    assert turns["ci95"] == pytest.approx([40.0 - half, 40.0 + half], abs=0.01)  # t table: 4.303
    assert turns["verdict"] == "holds"
    # OOD -10, 0, 0 against pi_0: the interval crosses 0, so "no loss" holds;
    # against SFT the same numbers leave "above SFT" unresolved.
    assert got["PivotRL keeps out-of-domain accuracy (no loss against pi_0)"]["verdict"] == "holds"
    assert got["PivotRL's out-of-domain accuracy is above SFT's"]["verdict"] == "not resolved"
    assert got["PivotRL's in-domain success is above SFT's"]["verdict"] == "not resolved"
    assert len(got) == 4  # the ablations and end-to-end RL did not run


def test_shard_spec_and_taking_runs(pc, tmp_path):
    assert pc.take(tmp_path / "taken", "pivotrl-s0")
    assert not pc.take(tmp_path / "taken", "pivotrl-s0")  # a second shard skips it
    assert pc.take(tmp_path / "taken", "pivotrl-s1")
    assert pc.parse_shard("") == (0, 1) and pc.parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "x", "1/0", "-1/2"):
        with pytest.raises(SystemExit, match="shard"):
            pc.parse_shard(bad)


def test_sweep_overrides_copy_and_check_keys(pc):
    from pivotrl_jax import config as config_lib

    c = config_lib.load_config("configs/paper_claims.py:smoke")
    beta = c.train.beta
    assert beta != 0.05
    d = pc.with_overrides(c, "train.beta=0.05,train.learning_rate=3e-5")
    assert (d.train.beta, d.train.learning_rate, c.train.beta) == (0.05, 3e-5, beta)
    with pytest.raises(KeyError, match=r"train\.nope"):
        pc.with_overrides(c, "train.nope=1")
    assert pc.run_dir(Path("w"), "pivotrl", 0, "train.beta=0.05").name == "pivotrl-s0-trainbeta005"
    full = config_lib.load_config("configs/paper_claims.py")
    grid = {(lr, beta) for lr in (1e-4, 3e-4, 1e-3) for beta in (0.0, 0.1, 0.3)}
    default = (full.train.learning_rate, full.train.beta)  # the reference run, not swept again
    swept = [tuple(float(kv.split("=")[1]) for kv in o.split(",")) for _, o in full.sweep]
    assert sorted(swept) == sorted(grid - {default})  # each point once
    assert set(full.methods) >= {"sft", "pivotrl", "naive_rl", "e2e_rl"}


def _items(turns, episodes, ood):
    return {"turns": turns, "episodes": {"terminal": episodes}, "ood": ood, "mean_turns": 2.0}


def test_summary_and_report_from_synthetic_runs(pc, tmp_path):
    from pivotrl_jax import config as config_lib

    c = config_lib.load_config(
        "configs/paper_claims.py:smoke",
        ["seeds=(0, 1)", "methods=('pivotrl', 'e2e_rl')", "sweep=()", "domains=('terminal',)"],
    )
    base = _items([0, 0, 1, 0], [0, 1], [1, 1, 0, 1])

    def run(turns, curve_acc, rollout_turns, zero):
        curve = [
            {"step": 2 * (i + 1), "turn_acceptance": v, "turns": t, "seconds": t / 10}
            for i, (v, t) in enumerate(zip(curve_acc, rollout_turns))
        ]
        sig = {
            "group_reward_std_mean": 0.3,
            "zero_signal_fraction": zero,
            "steps": 4,
            "steps_that_updated": 3,
            "per_iteration": [{"step": 1, "group_reward_std": 0.3, "zero_signal": zero}],
        }
        return {
            "curve": curve,
            "final": _items(turns, [1, 1], [1, 1, 0, 0]),
            "rollout_turns": rollout_turns[-1],
            "train_seconds": rollout_turns[-1] / 10,
            "signal": sig,
        }

    runs = {
        ("pivotrl", 0, ""): run([1, 0, 1, 1], [30.0, 75.0], [64, 128], 0.2),
        ("pivotrl", 1, ""): run([1, 1, 1, 1], [40.0, 100.0], [64, 128], 0.4),
        ("e2e_rl", 0, ""): run([0, 0, 1, 1], [25.0, 50.0], [256, 512], 0.9),
        ("e2e_rl", 1, ""): run([0, 0, 1, 0], [25.0, 25.0], [256, 512], 0.9),
    }
    sel = {"candidates": 10, "kept": 4, "kept_fraction": 0.4, "zero_variance_fraction": 0.5}
    s = pc.summarize(c, base, runs, sel, 80)
    piv, e2e = s["methods"]["pivotrl"], s["methods"]["e2e_rl"]
    assert s["base"]["turn_acceptance"] == 25.0
    assert piv["turn_acceptance"]["mean"] == pytest.approx(87.5)
    assert piv["turn_acceptance_change"]["mean"] == pytest.approx(62.5)
    assert piv["turn_acceptance_change_seed0_paired"]["mean"] == pytest.approx(50.0)
    assert piv["in_domain_change"]["mean"] == pytest.approx(50.0)
    assert piv["ood_change"]["mean"] == pytest.approx(-25.0)
    # levels are pi_0 + (5, 10, 15): 30, 35, 40; PivotRL's mean curve is (35, 87.5)
    assert piv["turns_to_reach"] == {"30.0": 64, "35.0": 64, "40.0": 128}
    assert e2e["turns_to_reach"]["30.0"] == 512 and e2e["turns_to_reach"]["40.0"] is None
    assert e2e["steps_that_updated"] == 3
    # Claims whose methods ran: OOD 50% in both seeds against pi_0's 75% (a certain loss), and
    # in-domain success equal to end-to-end RL's in both seeds (no loss).
    by_claim = {k["claim"]: k for k in s["claims"]}
    assert len(by_claim) == 2
    ood = by_claim["PivotRL keeps out-of-domain accuracy (no loss against pi_0)"]
    assert ood["difference"] == pytest.approx(-25.0) and ood["verdict"] == "does not hold"
    (e2e_claim,) = (k for k in s["claims"] if "end-to-end" in k["claim"])
    assert e2e_claim["ci95"] == [0.0, 0.0] and e2e_claim["verdict"] == "holds"
    md = pc.report_markdown(c, s, "python benchmarks/paper_claims.py", 60.0)
    assert "| -25.0 | [-25.0, -25.0] | does not hold |" in md
    assert "| pivotrl | 87.5 ± " in md and "not reached" in md
    assert "updated the policy at 3 of its 4 steps" in md
    pc.plot(s, runs, tmp_path)
    for name in ("acceptance_vs_turns.png", "tradeoff.png", "signal.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_benchmark_smoke_end_to_end_and_reuse(pc, tmp_path):
    wd, res = tmp_path / "pc", tmp_path / "results"
    argv = [
        "--config=configs/paper_claims.py:smoke",
        f"--config.workdir={wd}",
        f"--config.results_dir={res}",
    ]
    # Two shard processes train the runs; this process then finds them all done and reports.
    summary = pc.main([*argv, "--config.jobs=2"])
    c = summary["config"]
    t = c["train"]
    assert set(summary["methods"]) == set(c["methods"]) and len(c["methods"]) == 5
    base = json.loads((wd / "eval" / "pi_0.json").read_text())
    for name, m in summary["methods"].items():
        run = json.loads((wd / "claims" / f"{name}-s0" / "result.json").read_text())["result"]
        fin = run["final"]
        assert len(fin["turns"]) == len(base["turns"]) > 0  # the same held-out turns
        assert m["turn_acceptance"]["mean"] == pytest.approx(
            100 * sum(fin["turns"]) / len(fin["turns"])
        )
        if name in pc.TURN_LEVEL:
            # one turn per sample: P x G per iteration, a checkpoint per step
            assert run["rollout_turns"] == t["steps"] * t["pivots_per_step"] * t["group_size"]
            assert [p["step"] for p in run["curve"]] == list(range(1, t["steps"] + 1))
        elif name == "e2e_rl":
            steps = pc.e2e_steps(pc.load(argv), base)
            lo = steps * c["e2e_tasks_per_step"] * t["group_size"]  # episodes last >= 1 turn
            assert lo <= run["rollout_turns"] <= lo * c["eval"]["max_turns"]
        else:
            assert run["rollout_turns"] == 0
    assert [p["overrides"] for p in summary["sweep"]].count("train.beta=0.05") == 1
    for name in ("results.json", "report.md", "acceptance_vs_turns.png", "tradeoff.png"):
        assert (res / name).exists()
    assert "| pivotrl |" in (res / "report.md").read_text()
    # A second, unsharded run reuses every stage and run.
    again = pc.main(argv)
    assert again["methods"] == summary["methods"]
    assert again["seconds"] < summary["seconds"] / 2
