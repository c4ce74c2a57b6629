"""Create a randomly initialised Qwen3 / Qwen3-MoE model plus tokenizer, in Hugging Face layout."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from absl import flags

from pivotrl_jax import config as config_lib
from pivotrl_jax.errors import ConfigError, InputError

DEFAULT_CONFIG = "configs/model.py"


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "output",
        None,
        "Folder for config.json, safetensors and tokenizer.",
        flag_values=fv,
        required=True,
    )


def build_tokenizer(tok_cfg, out_dir: Path):
    """The project BPE tokenizer (trained here, or copied from `from_dir`), saved in `out_dir`."""
    from transformers import AutoTokenizer

    from pivotrl_jax.data.tokenizer import phrase_tokens, train_tokenizer

    if tok_cfg.from_dir:
        tok = AutoTokenizer.from_pretrained(tok_cfg.from_dir)
        tok.save_pretrained(str(out_dir))
        return tok
    texts = []
    for path in tok_cfg.extra_text_files:
        try:
            texts += Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read tokenizer text: {e}", path=path) from None
    phrases = []
    if tok_cfg.get("phrases"):
        extra = []
        for path in tok_cfg.get("phrase_files") or ():
            extra += _phrase_file(path)
        phrases = phrase_tokens(extra)
    return train_tokenizer(texts, vocab_size=tok_cfg.vocab_size, out_dir=out_dir, phrases=phrases)


def _phrase_file(path: str) -> list[str]:
    """A JSON list of strings."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read phrases: {e}", path=path) from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError("phrases must be a JSON list of strings", path=path)
    return value


def model_config(model_cfg, tokenizer):
    """`ModelConfig` from the config section; vocab_size 0 takes the tokenizer's size."""
    from pivotrl_jax.models import ModelConfig, ModelConfigError

    fields = config_lib.to_dict(model_cfg)
    fields["mlp_only_layers"] = tuple(fields["mlp_only_layers"])
    if not fields["vocab_size"]:
        fields["vocab_size"] = len(tokenizer)
    if fields["vocab_size"] < len(tokenizer):
        raise ConfigError(
            f"model.vocab_size={fields['vocab_size']} is smaller than the "
            f"tokenizer's {len(tokenizer)} tokens"
        )
    fields.update(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
    )
    try:
        return ModelConfig(**fields)
    except ModelConfigError as e:
        raise ConfigError(f"model.{e.field}: {e}") from None


def init_model(cfg, out_dir: str | Path) -> Path:
    """Write tokenizer + random model for `cfg` (a configs/model.py config) into `out_dir`."""
    from flax import nnx

    from pivotrl_jax.models import Transformer, export_hf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(cfg.tokenizer, out)
    mcfg = model_config(cfg.model, tokenizer)
    model = Transformer(mcfg, rngs=nnx.Rngs(cfg.seed))
    export_hf(model, mcfg, out)
    return out


def main(fv: flags.FlagValues) -> int:
    cfg = fv.config
    out = init_model(cfg, fv.output)
    config_lib.write_resolved_config(
        cfg, out, name="pivotrl_config.json", command=" ".join(sys.argv)
    )
    from pivotrl_jax.models import read_config

    mcfg = read_config(out)
    print(
        f"wrote a random {mcfg.to_hf_config()['architectures'][0]} "
        f"(vocab {mcfg.vocab_size}, {mcfg.num_hidden_layers} layers, width "
        f"{mcfg.hidden_size}, experts {mcfg.num_experts}) and its tokenizer to {out}",
        file=sys.stderr,
    )
    return 0
