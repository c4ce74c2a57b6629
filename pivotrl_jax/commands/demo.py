"""Run the whole PivotRL pipeline on the synthetic domains: pi_0, pivots, GRPO, evaluation."""

from __future__ import annotations

from absl import flags

DEFAULT_CONFIG = "configs/demo.py"


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_bool("progress", True, "Show progress bars.", flag_values=fv)


def main(fv: flags.FlagValues) -> int:
    from pivotrl_jax import demo

    demo.run(fv.config, progress=fv.progress)
    return 0
