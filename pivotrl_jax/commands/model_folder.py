"""The model and tokenizer folders a command is given, checked before anything loads them.

A folder must hold a readable `config.json` and weights as safetensors (HF layout) or an orbax
`params/` checkpoint (native layout): pickle-based files (`pytorch_model.bin`, `*.pt`, `*.pkl`)
are never opened, since unpickling runs code. Each safetensors header is read (not the tensors)
so a damaged file or a tensor of an integer dtype is named here; shapes are checked against the
config when the weights load (models.weights).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pivotrl_jax.errors import InputError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
WEIGHT_DTYPES = ("F32", "BF16", "F16", "F64")


def check_model_dir(path: str | os.PathLike) -> dict[str, Any]:
    """The folder's config.json as a dict, once the folder has passed the checks above."""
    folder = Path(path)
    if not folder.is_dir():
        raise InputError("model folder not found", path=folder, reason="missing_file")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise InputError("missing file config.json", path=folder, reason="missing_file")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise InputError(f"not a readable JSON file: {e}", path=config_path) from None
    if not isinstance(config, dict):
        raise InputError("expected a JSON object", path=config_path)
    _check_config(config_path)
    if (folder / "params").is_dir():  # native orbax layout
        return config
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        pickles = sorted(f.name for f in folder.iterdir() if f.suffix in PICKLE_SUFFIXES)
        why = (
            f" ({', '.join(pickles)}: pickle-based weights are never loaded; convert them to "
            "safetensors)"
            if pickles
            else ""
        )
        raise InputError(f"no *.safetensors weights{why}", path=folder, reason="missing_file")
    for file in weights:
        _check_safetensors(file)
    return config


def _check_config(config_path: Path) -> None:
    """The model config's fields (a ModelConfigError names the field and the file)."""
    from pivotrl_jax.models.weights import read_config  # deferred: imports jax

    read_config(config_path.parent)


def _check_safetensors(file: Path) -> None:
    from safetensors import safe_open  # deferred: only runs that load weights need it

    try:
        with safe_open(file, framework="numpy") as f:
            dtypes = {name: f.get_slice(name).get_dtype() for name in f.keys()}  # noqa: SIM118
    except Exception as e:  # the Rust reader raises its own error type for any damage
        raise InputError(f"damaged safetensors file: {e}", path=file) from None
    for name, dtype in dtypes.items():
        if dtype not in WEIGHT_DTYPES:
            raise InputError(
                f"dtype {dtype} is not a floating-point weight dtype ({', '.join(WEIGHT_DTYPES)})",
                path=file,
                field=name,
            )


def load_tokenizer(path: str | os.PathLike, vocab_size: int | None = None):
    """`AutoTokenizer.from_pretrained(path)` offline, with any failure an InputError naming the
    folder. The folder must hold a tokenizer file (transformers would otherwise build an empty
    tokenizer from config.json alone), and with `vocab_size` (the model's) every token id must
    fit the embedding."""
    folder = Path(path)
    if not folder.is_dir():
        raise InputError("tokenizer folder not found", path=path, reason="missing_file")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise InputError(
            f"cannot load a tokenizer: none of {', '.join(TOKENIZER_FILES)} is there",
            path=path,
            reason="missing_file",
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer  # deferred: only tokenising runs need it

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # transformers and tokenizers raise many types for a bad folder
        raise InputError(
            f"cannot load a tokenizer: {type(e).__name__}: {str(e)[:300]}", path=path
        ) from None
    if vocab_size is not None and len(tokenizer) > vocab_size:
        raise InputError(
            f"the tokenizer has {len(tokenizer)} tokens, more than the model's vocab_size "
            f"{vocab_size}",
            path=path,
        )
    return tokenizer
