"""Score JSONL token sequences with a model: log p(token_t | tokens_<t) for t = 1..T-1.

    pivotrl score --model DIR --input in.jsonl --output out.jsonl
                  [--dtype bfloat16] [--batch-size 8]

Each input line is an object with `input_ids` (a list of token ids) or `text` (tokenised by the
model folder's tokenizer); the output line is the input object plus `logprobs`, T - 1 floats.
DIR is an HF folder (config.json + safetensors) or a `pivotrl convert --to orbax` folder.
Rows are batched longest-first with padding that the model never attends to, so a row's scores
do not depend on its batch; the output is written under a temporary name, then renamed.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from flax import nnx

from pivotrl_jax import atomic
from pivotrl_jax.errors import InputError
from pivotrl_jax.models import load_model
from pivotrl_jax.models.transformer import forward
from pivotrl_jax.train.logprobs import sequence_logprobs


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "model",
        None,
        "Model folder (HF safetensors or orbax layout).",
        flag_values=fv,
        required=True,
    )
    flags.DEFINE_string(
        "input",
        None,
        "JSONL of {input_ids: [...]} or {text: ...} lines.",
        flag_values=fv,
        required=True,
    )
    flags.DEFINE_string(
        "output",
        None,
        "JSONL to write: each input line plus `logprobs`.",
        flag_values=fv,
        required=True,
    )
    flags.DEFINE_enum(
        "dtype", "float32", ["float32", "bfloat16"], "Compute and parameter dtype.", flag_values=fv
    )
    flags.DEFINE_integer("batch_size", 8, "Rows per forward pass.", lower_bound=1, flag_values=fv)
    flags.DEFINE_alias("batch-size", "batch_size", flag_values=fv)


def read_rows(path: str, vocab_size: int, tokenize) -> tuple[list[dict], list[list[int]]]:
    """The input objects and their token ids; an InputError names the file and line."""
    rows, ids = [], []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", path=path) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", path=path) from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"not valid JSON ({e.msg})", path=path, line=n) from None
        if not isinstance(row, dict):
            raise InputError("expected a JSON object", path=path, line=n)
        if "input_ids" in row:
            tokens = row["input_ids"]
            if not isinstance(tokens, list) or not all(
                isinstance(t, int) and not isinstance(t, bool) for t in tokens
            ):
                raise InputError(
                    "expected a list of integers", path=path, line=n, field="input_ids"
                )
            bad = [t for t in tokens if not 0 <= t < vocab_size]
            if bad:
                raise InputError(
                    f"token id {bad[0]} outside [0, {vocab_size})",
                    path=path,
                    line=n,
                    field="input_ids",
                )
        elif "text" in row:
            if not isinstance(row["text"], str):
                raise InputError("expected a string", path=path, line=n, field="text")
            tokens = tokenize(row["text"])
        else:
            raise InputError("needs `input_ids` or `text`", path=path, line=n)
        if not tokens:
            raise InputError("no tokens to score", path=path, line=n)
        rows.append(row)
        ids.append(list(tokens))
    return rows, ids


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _tokenizer(model_dir: str):
    """A `text -> ids` function from the model folder's tokenizer, loaded on first use."""
    cache: dict[str, Any] = {}

    def tokenize(text: str) -> list[int]:
        if "tok" not in cache:
            from transformers import AutoTokenizer

            # transformers may build an empty tokenizer from config.json alone: look first.
            if not any((Path(model_dir) / f).is_file() for f in _TOKENIZER_FILES):
                raise InputError(
                    "`text` input needs a tokenizer, and the model folder has none "
                    f"({', '.join(_TOKENIZER_FILES)}); give `input_ids`",
                    path=model_dir,
                )
            try:
                cache["tok"] = AutoTokenizer.from_pretrained(model_dir)
            except (OSError, ValueError, TypeError) as e:
                raise InputError(
                    f"`text` input needs a tokenizer, and the model folder has "
                    f"none that loads ({type(e).__name__}); give `input_ids`",
                    path=model_dir,
                ) from None
        return cache["tok"](text)["input_ids"]

    return tokenize


def _bucket(length: int) -> int:
    """Padded length: the next power of two from 16, so a file compiles a handful of shapes."""
    return max(16, 1 << (length - 1).bit_length())


def score(model: nnx.Module, ids: list[list[int]], batch_size: int) -> list[list[float]]:
    """Next-token logprobs of every sequence, batched longest-first with right padding."""
    graphdef, params = nnx.split(model)

    @jax.jit
    def batch_logprobs(params, input_ids, segment_ids):
        positions = jnp.broadcast_to(jnp.arange(input_ids.shape[1]), input_ids.shape)
        lp, _ = sequence_logprobs(
            functools.partial(forward, graphdef, params), input_ids, positions, segment_ids
        )
        return lp

    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    out: list[list[float]] = [[] for _ in ids]
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        T = _bucket(max(len(ids[i]) for i in chosen))
        tokens = np.zeros((batch_size, T), np.int32)
        segments = np.zeros((batch_size, T), np.int32)
        for r, i in enumerate(chosen):
            tokens[r, : len(ids[i])] = ids[i]
            segments[r, : len(ids[i])] = 1
        lp = np.asarray(batch_logprobs(params, tokens, segments))
        for r, i in enumerate(chosen):
            out[i] = lp[r, : len(ids[i]) - 1].tolist()
    return out


def main(fv: flags.FlagValues) -> int:
    model, config = load_model(fv.model, dtype=fv.dtype, param_dtype=fv.dtype)
    rows, ids = read_rows(fv.input, config.vocab_size, _tokenizer(fv.model))
    # float32 means float32 matmuls: on GPUs the default precision (TF32) moved our logits by
    # ~1e-2 on the tiny test models; "highest" kept them within 1e-5 of the CPU result.
    precision = "highest" if fv.dtype == "float32" else "default"
    with jax.default_matmul_precision(precision):
        logprobs = score(model, ids, fv.batch_size)
    n = atomic.write_jsonl(
        Path(fv.output), ({**row, "logprobs": lp} for row, lp in zip(rows, logprobs))
    )
    print(f"scored {n} sequences -> {fv.output}")
    return 0
