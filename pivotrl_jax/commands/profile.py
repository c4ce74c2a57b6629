"""Profile candidates: pi_0 samples K actions per candidate, a verifier scores each (resumable)."""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from absl import flags

from pivotrl_jax import config as config_lib
from pivotrl_jax.errors import ConfigError, InputError
from pivotrl_jax.rollout.factory import ENGINE_BUILDERS

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
    flags.DEFINE_enum(
        "on_error",
        "fail",
        ["fail", "skip"],
        "A bad candidate record: stop with its shard, record number and field, or leave it out "
        "and count it.",
        flag_values=fv,
    )


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


def read_candidates(
    in_dir: str, check: Callable, on_error: str
) -> tuple[Callable[[], Iterator[dict]], int, dict[str, int], list[str]]:
    """One checking pass over the candidate shards, then a re-readable stream of the good ones.

    Returns (stream factory, number of good candidates, skipped count by reason, first error
    messages). With `on_error="fail"` the first bad record raises its located InputError."""
    from pivotrl_jax.data import records as records_io

    bad: set[tuple[str, int]] = set()
    skipped: Counter = Counter()
    examples: list[str] = []
    good = 0
    for path in records_io.shard_paths(in_dir, "candidates"):
        for i, raw in enumerate(records_io.read_shard(path)):
            try:
                check(records_io.decode_at(raw, path, i), path, i)
            except InputError as e:
                if on_error == "fail":
                    raise
                bad.add((path, i))
                skipped[e.reason] += 1
                if len(examples) < 20:
                    examples.append(str(e))
                continue
            good += 1
    if good == 0:
        raise InputError("no usable candidate records found", path=in_dir)

    def stream() -> Iterator[dict]:
        for path in records_io.shard_paths(in_dir, "candidates"):
            for i, raw in enumerate(records_io.read_shard(path)):
                if (path, i) not in bad:
                    yield records_io.decode_at(raw, path, i)

    return stream, good, dict(skipped), examples


def main(fv: flags.FlagValues) -> int:
    import jax

    import pivotrl_jax.envs  # noqa: F401  (registers the domains' verifier sandboxes)
    from pivotrl_jax.commands.model_folder import check_model_dir, load_tokenizer
    from pivotrl_jax.data.record_checks import prompt_record_check
    from pivotrl_jax.pivots.profile import DomainVerifiers, ProfileConfig, run_profile
    from pivotrl_jax.rollout.factory import EngineSpec, open_engine
    from pivotrl_jax.rollout.text import completion_text

    cfg = fv.config
    config_lib.require(cfg, "model_dir")
    try:
        pcfg = ProfileConfig(**config_lib.to_dict(cfg.profile))
        spec = EngineSpec.from_mapping(config_lib.to_dict(cfg.engine))
        ENGINE_BUILDERS.get(spec.name)
        if cfg.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {cfg.shard_size}")
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"profile config: {e}") from None
    verifiers = DomainVerifiers.from_mappings(
        config_lib.to_dict(cfg.verifiers), config_lib.to_dict(cfg.verifier_params)
    )
    pi = jax.process_index() if fv.process_index is None else fv.process_index
    pc = jax.process_count() if fv.process_count is None else fv.process_count
    if not 0 <= pi < pc:
        raise ConfigError(f"--process_index {pi} is not in [0, --process_count {pc})")
    model_config = check_model_dir(cfg.model_dir)
    tokenizer = load_tokenizer(cfg.model_dir, model_config.get("vocab_size"))
    record_check = prompt_record_check(model_config.get("vocab_size"))

    def check(record, path, index):
        record_check(record, path, index)
        verifiers.check(record, path, index)

    stream, count, skipped, examples = read_candidates(fv.candidates, check, fv.on_error)
    out = Path(fv.output)
    out.mkdir(parents=True, exist_ok=True)
    stop_ids = (tokenizer.eos_token_id,)

    def decode(ids):
        return completion_text(tokenizer, ids, stop_ids)

    provenance = {
        "model_dir": str(Path(cfg.model_dir).resolve()),
        "model_sha256": model_hash(cfg.model_dir),
        "engine": spec.name,
    }
    config_lib.write_resolved_config(cfg, out, command=" ".join(sys.argv))
    with open_engine(spec, cfg.model_dir) as engine:
        provenance["weight_version"] = str(getattr(engine, "weight_version", ""))
        summary = run_profile(
            stream(),
            str(out),
            engine,
            decode,
            verifiers,
            pcfg,
            process_index=pi,
            process_count=pc,
            provenance=provenance,
            progress=fv.progress,
            shard_size=cfg.shard_size,
            total=count,
            skipped=skipped,
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
    if skipped:
        brief["skipped_candidates"] = skipped
        for e in examples[:5]:
            print(f"skipped: {e}", file=sys.stderr)
    print(json.dumps(brief))
    return 0
