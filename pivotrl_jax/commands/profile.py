"""Profile candidates: pi_0 samples K actions per candidate, a verifier scores each (resumable)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from absl import flags

from pivotrl_jax import config as config_lib
from pivotrl_jax.errors import InputError

DEFAULT_CONFIG = "configs/profile.py"


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "candidates", None, "Folder written by `pivotrl extract`.", flag_values=fv, required=True
    )
    flags.DEFINE_string(
        "output",
        None,
        "Output folder (resumes if it holds a partial run).",
        flag_values=fv,
        required=True,
    )
    flags.DEFINE_integer(
        "process_index", None, "This process's slice (default: JAX's).", flag_values=fv
    )
    flags.DEFINE_integer(
        "process_count", None, "Number of slices (default: JAX's).", flag_values=fv
    )
    flags.DEFINE_bool("progress", True, "Show a progress bar.", flag_values=fv)


def model_hash(model_dir: str) -> str:
    """sha256 over the folder's weight and config files (names and bytes), in name order."""
    h = hashlib.sha256()
    files = [*sorted(Path(model_dir).glob("*.safetensors")), Path(model_dir) / "config.json"]
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def main(fv: flags.FlagValues) -> int:
    import jax
    from transformers import AutoTokenizer

    import pivotrl_jax.envs  # noqa: F401  (registers the domains' verifier sandboxes)
    from pivotrl_jax.data import records as records_io
    from pivotrl_jax.pivots.profile import DomainVerifiers, ProfileConfig, run_profile
    from pivotrl_jax.rollout.factory import EngineSpec, open_engine
    from pivotrl_jax.rollout.text import completion_text

    cfg = fv.config
    config_lib.require(cfg, "model_dir")
    pcfg = ProfileConfig(**config_lib.to_dict(cfg.profile))
    try:
        candidates = list(records_io.read_records(fv.candidates, prefix="candidates"))
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read candidates: {e}", path=fv.candidates) from None
    if not candidates:
        raise InputError("no candidate records found", path=fv.candidates)
    pi = jax.process_index() if fv.process_index is None else fv.process_index
    pc = jax.process_count() if fv.process_count is None else fv.process_count
    out = Path(fv.output)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model_dir)
    stop_ids = (tokenizer.eos_token_id,)

    def decode(ids):
        return completion_text(tokenizer, ids, stop_ids)

    spec = EngineSpec.from_mapping(config_lib.to_dict(cfg.engine))
    provenance = {
        "model_dir": str(Path(cfg.model_dir).resolve()),
        "model_sha256": model_hash(cfg.model_dir),
        "engine": spec.name,
    }
    config_lib.write_resolved_config(cfg, out, command=" ".join(sys.argv))
    with open_engine(spec, cfg.model_dir) as engine:
        provenance["weight_version"] = str(getattr(engine, "weight_version", ""))
        summary = run_profile(
            candidates,
            str(out),
            engine,
            decode,
            DomainVerifiers.from_mappings(
                config_lib.to_dict(cfg.verifiers), config_lib.to_dict(cfg.verifier_params)
            ),
            pcfg,
            process_index=pi,
            process_count=pc,
            provenance=provenance,
            progress=fv.progress,
            shard_size=cfg.shard_size,
        )
    brief = {
        k: summary[k]
        for k in (
            "candidates",
            "rollouts",
            "generated_tokens",
            "zero_variance_fraction",
            "mean_reward",
            "seconds_this_run",
            "non_engine_time_fraction",
        )
    }
    brief["mean_reward_histogram"] = summary["mean_reward_histogram"]["counts"]
    print(json.dumps(brief))
    return 0
