"""Logit parity of our Flax decoder with transformers over the tiny test configs.

    .venv/bin/python benchmarks/model_parity.py [--length 32] [--batch 2]

For each config of `pivotrl_jax.models.testing.TINY_CONFIGS` (the table the tests use): build
the transformers model with random weights, save it, import it with `load_hf`, run both on the
same random tokens in float32 and take the largest absolute logit difference. Prints one JSON
object: `"max_abs_logit_diff_dense"` and `"max_abs_logit_diff_moe"` (the worst config of each
kind), the per-config values, and the largest |logit| for scale. The tests require <= 1e-4.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax.numpy as jnp
import numpy as np

from pivotrl_jax.models import default_positions, load_hf
from pivotrl_jax.models.testing import (
    TINY_CONFIGS,
    build_reference,
    jitted_logits,
    random_tokens,
    reference_logits,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    per_config, scale = {}, 0.0
    for seed, (name, config) in enumerate(sorted(TINY_CONFIGS.items())):
        with tempfile.TemporaryDirectory() as folder:
            ref = build_reference(config, folder, seed=seed)
            model, _ = load_hf(folder)
        ids = random_tokens(config, args.batch, args.length, seed=seed)
        mask = jnp.ones_like(ids)
        ours = jitted_logits(model)(ids, default_positions(mask), mask)
        theirs = reference_logits(ref, ids)
        per_config[name] = float(np.abs(ours - theirs).max())
        scale = max(scale, float(np.abs(theirs).max()))
    worst = lambda moe: max(v for k, v in per_config.items() if TINY_CONFIGS[k].is_moe == moe)
    print(
        json.dumps(
            {
                "max_abs_logit_diff_dense": worst(False),
                "max_abs_logit_diff_moe": worst(True),
                "per_config": per_config,
                "max_abs_logit": scale,
                "tokens": [args.batch, args.length],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
