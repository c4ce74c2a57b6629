"""`pivotrl select` on real profiled shards: counts, split files, report and plot."""

import json

import numpy as np
import pytest

from pivotrl_jax import atomic, cli
from pivotrl_jax.data import records as records_io
from pivotrl_jax.pivots.profile import shard_prefix, summary_name
from pivotrl_jax.pivots.stats import reward_stats


def profiled(i, rewards, traj=None, kind="tool_call"):
    mean, var = reward_stats(np.array([rewards], dtype=float))
    return {
        "schema_version": 1,
        "id": f"t{traj if traj is not None else i}:{i}",
        "trajectory_id": f"t{traj if traj is not None else i}",
        "domain": "tool_use" if i % 2 else "terminal",
        "kind": kind,
        "profile": {"rewards": rewards, "mean": float(mean[0]), "variance": float(var[0])},
    }


def write_profiled(d, recs, process_count=1):
    for p in range(process_count):
        mine = recs[p::process_count]
        records_io.write_records(d, mine, prefix=shard_prefix(p, process_count))
        atomic.write_json(d / summary_name(p, process_count), {"candidates": len(mine)})


def test_select_command(tmp_path, capsys):
    recs = [
        profiled(0, [1, 1, 1, 1]),  # zero variance
        profiled(1, [0, 0, 0, 0]),  # zero variance
        profiled(2, [1, 0, 0, 0]),  # mean 0.25: kept
        profiled(3, [1, 1, 0, 0]),  # mean 0.5: kept
        profiled(4, [1, 1, 1, 0]),  # mean 0.75: too easy
        profiled(5, [0, 1, 0, 0]),  # kept
    ]
    prof = tmp_path / "profiled"
    write_profiled(prof, recs, process_count=2)
    out = tmp_path / "pivots"
    rc = cli.main(
        ["select", "--profiled", str(prof), "--output", str(out), "--config.select.lambda_diff=0.6"]
    )
    assert rc == 0
    kept = list(records_io.read_records(out, prefix="pivots-train"))
    assert sorted(r["id"] for r in kept) == ["t2:2", "t3:3", "t5:5"]
    assert all(r["record_type"] == "pivot" and r["split"] == "train" for r in kept)
    report = json.loads((out / "select_report.json").read_text())
    assert report["dropped"]["zero_variance"] == 2 and report["dropped"]["too_easy"] == 1
    assert report["kept"] == 3 and report["zero_variance_fraction"] == pytest.approx(2 / 6)
    png = (out / "mean_reward_hist.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    assert json.loads((out / "config.json").read_text())["config"]["select"]["lambda_diff"] == 0.6


def test_select_refuses_unfinished_profile(tmp_path, capsys):
    prof = tmp_path / "profiled"
    write_profiled(prof, [profiled(0, [1, 0])], process_count=1)
    (prof / "journal-p00000-of-00001.jsonl").write_text("")
    rc = cli.main(["select", "--profiled", str(prof), "--output", str(tmp_path / "o")])
    assert rc == 2
    assert "unfinished" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
