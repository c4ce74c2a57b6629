"""Pivot selection (PivotRL Eq. 5).

    pivotrl select --profiled runs/profiled --output runs/pivots --config=configs/select.py \
        --config.select.lambda_diff=0.6 --config.select.budget=0
"""

from ml_collections import config_dict


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    c = config_dict.ConfigDict()
    c.select = config_dict.ConfigDict(
        dict(
            lambda_diff=0.6,  # keep mu(s) < lambda_diff (the tool-use recipe's bound)
            inclusive=False,  # True: mu(s) <= lambda_diff
            min_variance=0.0,  # keep sigma^2(s) > min_variance
            message_fraction=1.0,  # fraction of message pivots kept
            budget=0,  # max pivots (0 = all); the easiest are dropped first
            val_fraction=0.0,  # fraction of source trajectories held out
            seed=0,
        )
    )
    return c
