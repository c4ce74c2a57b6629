"""Candidate extraction: every assistant turn of every SFT trajectory becomes a candidate.

    pivotrl extract --input data/sft.jsonl --output runs/candidates --config=configs/extract.py \
        --tokenizer runs/model --config.max_prompt_tokens=4096 --config.truncation=left

Variants: `calls` keeps only tool-call turns (single and parallel); `skip` sets on_error=skip.
"""

from ml_collections import config_dict

from pivotrl_jax.data.turns import DEFAULT_TOOL_ERROR_PATTERN


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    variants = set((arg or "").split(",")) - {""}
    unknown = variants - {"calls", "skip"}
    if unknown:
        raise ValueError(f"unknown extract variants {sorted(unknown)}; known: calls, skip")
    c = config_dict.ConfigDict()
    # Inputs.
    c.input_format = "auto"  # auto (by row keys) | openai_chat | pivot_rows
    c.source = "auto"  # auto (.parquet / dataset folder -> hf) | jsonl | hf
    c.on_error = "skip" if "skip" in variants else "fail"  # fail: exit 2 before writing anything
    c.max_line_bytes = 16 << 20
    # Which turns become candidates.
    c.kinds = "tool_call,parallel" if "calls" in variants else "tool_call,parallel,message"
    c.drop_tool_errors = False  # drop call turns whose tool result looks like an error
    c.tool_error_pattern = DEFAULT_TOOL_ERROR_PATTERN
    c.message_fraction = 1.0  # keep this fraction of message turns (by id hash)
    c.seed = 0
    # Domains and verifiers.
    c.domain = ""  # non-empty: tag every candidate with this domain
    c.default_domain = "default"  # for rows without a domain
    c.verifiers = ""  # per domain, "domain=verifier,domain2=verifier2"
    c.default_verifier = "tool_call"
    # Tokens: prompt ids with the model's own chat template (empty: messages only).
    c.tokenizer = ""
    c.max_prompt_tokens = 0  # 0: no limit
    c.truncation = "drop"  # drop | left (drop whole exchanges from the front)
    c.drop_token_mismatch = False  # drop turns whose tokens drift from the whole conversation
    # Output.
    c.output_format = "records"  # records (ArrayRecord shards) | pivot_rows (JSONL)
    c.shard_size = 1000
    return c
