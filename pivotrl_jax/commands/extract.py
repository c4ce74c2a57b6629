"""Extract candidates (every assistant turn) from SFT trajectories or pivot rows."""

from __future__ import annotations

from absl import flags

from pivotrl_jax import config as config_lib
from pivotrl_jax.commands.model_folder import load_tokenizer
from pivotrl_jax.data import extraction
from pivotrl_jax.data.turns import TurnOptions
from pivotrl_jax.errors import ConfigError

DEFAULT_CONFIG = "configs/extract.py"
FORMATS = {"records": "records", "pivot-rows": "pivot_rows", "pivot_rows": "pivot_rows"}


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_multi_string(
        "input",
        None,
        "Input files (JSONL, Parquet, dataset folders); repeatable.",
        flag_values=fv,
        required=True,
    )
    flags.DEFINE_string("output", None, "Output folder.", flag_values=fv, required=True)
    flags.DEFINE_enum(
        "format",
        None,
        list(FORMATS),
        "Output format (default: config.output_format).",
        flag_values=fv,
    )
    flags.DEFINE_string(
        "tokenizer", None, "Tokenizer folder (default: config.tokenizer).", flag_values=fv
    )
    flags.DEFINE_enum(
        "on_error", None, ["fail", "skip"], "Bad rows (default: config.on_error).", flag_values=fv
    )
    flags.DEFINE_string("domain", None, "Tag every candidate with this domain.", flag_values=fv)


def _verifiers(spec: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        domain, eq, name = item.partition("=")
        if not eq or not domain or not name:
            raise ConfigError(f"verifiers: expected 'domain=verifier', got {item!r}")
        out[domain.strip()] = name.strip()
    return out


def options_from_config(cfg) -> extraction.ExtractOptions:
    """The ConfigDict -> frozen options, with ConfigErrors naming the key."""
    try:
        turns = TurnOptions(
            kinds=tuple(k.strip() for k in cfg.kinds.split(",") if k.strip()),
            drop_tool_errors=cfg.drop_tool_errors,
            tool_error_pattern=cfg.tool_error_pattern,
            message_fraction=cfg.message_fraction,
            seed=cfg.seed,
            default_domain=cfg.default_domain,
            domain=cfg.domain or None,
            verifiers=_verifiers(cfg.verifiers),
            default_verifier=cfg.default_verifier,
        )
        return extraction.ExtractOptions(
            turns=turns,
            row_format=cfg.input_format,
            source=cfg.source,
            on_error=cfg.on_error,
            max_line_bytes=cfg.max_line_bytes,
            output_format=cfg.output_format,
            shard_size=cfg.shard_size,
            max_prompt_tokens=cfg.max_prompt_tokens,
            truncation=cfg.truncation,
            drop_token_mismatch=cfg.drop_token_mismatch,
        )
    except ValueError as e:
        raise ConfigError(f"extract config: {e}") from None


def main(fv: flags.FlagValues) -> int:
    cfg = fv.config
    with cfg.unlocked():
        if fv.format is not None:
            cfg.output_format = FORMATS[fv.format]
        if fv.tokenizer is not None:
            cfg.tokenizer = fv.tokenizer
        if fv.on_error is not None:
            cfg.on_error = fv.on_error
        if fv.domain is not None:
            cfg.domain = fv.domain
    opts = options_from_config(cfg)
    if opts.max_prompt_tokens and not cfg.tokenizer:
        raise ConfigError("max_prompt_tokens needs a tokenizer (--tokenizer or config.tokenizer)")
    tokenizer = load_tokenizer(cfg.tokenizer) if cfg.tokenizer else None
    m = extraction.extract(fv.input, fv.output, opts, tokenizer)
    config_lib.write_resolved_config(cfg, fv.output, command="extract", inputs=list(fv.input))
    print(summary(m, fv.output))
    return 0


def summary(m: dict, out: str) -> str:
    lines = [
        f"read {m['rows_read']} rows ({m['trajectories']} trajectories, "
        f"{m['pivot_rows_read']} pivot rows); wrote {m['candidates']} candidates to {out} "
        f"({m['output_format']})"
    ]
    for domain, kinds in m["counts"].items():
        lines.append(f"  {domain}: " + ", ".join(f"{k}={v}" for k, v in kinds.items()))
    for title, key in (("skipped rows", "skipped_rows"), ("skipped turns", "skipped_turns")):
        if m[key]:
            lines.append(f"  {title}: " + ", ".join(f"{k}={v}" for k, v in m[key].items()))
    lines += [f"    {e}" for e in m["error_examples"][:5]]
    if m["truncated"]:
        lines.append(f"  left-truncated prompts: {m['truncated']}")
    tc = m["token_check"]
    if tc is not None:
        lines.append(
            f"  token check: {tc['exact']}/{tc['checked']} exact, {tc['mismatch']} mismatched"
        )
    return "\n".join(lines)
