"""Select pivots from profiled candidates: variance > 0 and mean < lambda_diff, budget, split."""

from __future__ import annotations

import sys
from pathlib import Path

from absl import flags

from pivotrl_jax import atomic
from pivotrl_jax import config as config_lib
from pivotrl_jax.data import records as records_io
from pivotrl_jax.errors import InputError
from pivotrl_jax.pivots import plots
from pivotrl_jax.pivots.profile import read_profiled
from pivotrl_jax.pivots.select import SelectConfig, SelectRow, select

DEFAULT_CONFIG = "configs/select.py"
PIVOT_PREFIX = {"train": "pivots-train", "validation": "pivots-validation"}
REPORT_NAME = "select_report.json"
PLOT_NAME = "mean_reward_hist.png"


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "profiled", None, "Folder written by `pivotrl profile`.", flag_values=fv, required=True
    )
    flags.DEFINE_string(
        "output", None, "Output folder for the pivots.", flag_values=fv, required=True
    )


def to_row(r: dict) -> SelectRow:
    try:
        return SelectRow(
            id=r["id"],
            trajectory_id=r["trajectory_id"],
            domain=r.get("domain", ""),
            kind=r.get("kind", ""),
            mean=float(r["profile"]["mean"]),
            variance=float(r["profile"]["variance"]),
        )
    except (KeyError, TypeError) as e:
        raise InputError(
            f"profiled record lacks {e}", path=r.get("id", "?"), field=str(e)
        ) from None


def main(fv: flags.FlagValues) -> int:
    cfg = fv.config
    sel_cfg = SelectConfig(**config_lib.to_dict(cfg.select))
    try:
        profiled = read_profiled(fv.profiled)
    except (ValueError, FileNotFoundError) as e:
        raise InputError(str(e), path=fv.profiled) from None
    sel = select([to_row(r) for r in profiled], sel_cfg)
    out = Path(fv.output)
    out.mkdir(parents=True, exist_ok=True)
    by_id = {r["id"]: r for r in profiled}
    for split, ids in (("train", sel.train), ("validation", sel.validation)):
        recs = [{**by_id[i], "record_type": "pivot", "split": split} for i in ids]
        records_io.write_records(out, recs, prefix=PIVOT_PREFIX[split])
    report = {**sel.report, "train": len(sel.train), "validation": len(sel.validation)}
    atomic.write_json(out / REPORT_NAME, report)
    plots.mean_reward_histogram(
        [r["profile"]["mean"] for r in profiled], sel_cfg.lambda_diff, out / PLOT_NAME
    )
    config_lib.write_resolved_config(cfg, out, command=" ".join(sys.argv))
    print(
        f"selected {report['kept']} of {report['candidates']} candidates as pivots "
        f"({len(sel.train)} train, {len(sel.validation)} validation); dropped: "
        + ", ".join(f"{k}={v}" for k, v in report["dropped"].items())
        + f"\nwrote {out}/{REPORT_NAME} and {out}/{PLOT_NAME}",
        file=sys.stderr,
    )
    return 0
