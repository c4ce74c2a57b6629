"""Profile candidates under the frozen reference pi_0 (PivotRL Eq. 4).

    pivotrl profile --config=configs/profile.py --config.model_dir=runs/base \
        --candidates runs/candidates --output runs/profiled
    # SGLang at scale: --config.engine.name=sglang --config.engine.preset=gpu
    # attach:          --config.engine.urls='("http://127.0.0.1:30000",)'
"""

from ml_collections import config_dict

from pivotrl_jax.envs.domains import verifier_config
from pivotrl_jax.rollout.factory import engine_config


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    c = config_dict.ConfigDict()
    c.model_dir = config_dict.placeholder(str)  # pi_0 in HF layout (safetensors + tokenizer)
    c.engine = engine_config()  # name: jax (in-process) | sglang; see rollout/factory.py
    c.profile = config_dict.ConfigDict(
        dict(
            k=16,  # samples per candidate
            temperature=1.0,
            top_p=1.0,
            top_k=-1,
            max_new_tokens=256,
            candidates_per_call=32,
            seed=0,
            verifier_time_limit_s=10.0,
            # a completion cut at max_new_tokens never ended its turn: reward 0 unless True
            score_truncated=False,
        )
    )
    # Per-domain verifier overrides: {"terminal": {"name": "shell", "params": {...}}}. Without
    # one, the verifier named in each candidate record (set at extraction) is used with the
    # params given here per verifier name.
    c.verifiers = config_dict.ConfigDict()
    c.verifier_params = config_dict.ConfigDict({"tool_call": {"threshold": 0.1}})
    c.shard_size = 1000
    variants = set((arg or "").split(",")) - {""}
    if variants - {"greedy", "envs"}:
        raise ValueError(f"unknown profile variants {sorted(variants)}; known: greedy, envs")
    if "greedy" in variants:
        c.profile.temperature = 0.0
        c.profile.k = 1
    if "envs" in variants:  # the synthetic domains of pivotrl_jax.envs
        c.verifiers = config_dict.ConfigDict(verifier_config())
    return c
