"""The decoder's frozen configuration, and its translation to and from HF `config.json`.

Field names follow transformers' `Qwen3Config` / `Qwen3MoeConfig` so a reader can match them
against a checkpoint's `config.json`; `num_experts == 0` is the dense Qwen3 decoder.

>>> cfg = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
...                   num_attention_heads=4, num_key_value_heads=2, head_dim=8)
>>> cfg.to_hf_config()["model_type"], cfg.is_moe_layer(0)
('qwen3', False)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from pivotrl_jax.errors import PivotError

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
REMAT_CHOICES = ("none", "full", "dots")
_MODEL_TYPES = {"qwen3": "Qwen3ForCausalLM", "qwen3_moe": "Qwen3MoeForCausalLM"}


class ModelConfigError(PivotError, ValueError):
    """A model config with a missing, unsupported or inconsistent field; the message names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"model config field {field!r}: {message}")
        self.field = field
        self.detail = message


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Qwen3 dense / Qwen3-MoE decoder shape plus how to run it.

    Shape letters used across `models/`: D hidden_size, F intermediate size, N query heads,
    K KV heads, H head_dim, V vocab, E experts, R experts per token.
    """

    vocab_size: int  # V
    hidden_size: int  # D
    intermediate_size: int  # F of the dense SwiGLU layers
    num_hidden_layers: int
    num_attention_heads: int  # N
    num_key_value_heads: int  # K; N % K == 0 (GQA)
    head_dim: int  # H; need not equal D / N
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 32768
    # Mixture of experts; num_experts == 0 gives the dense Qwen3 decoder.
    num_experts: int = 0  # E
    num_experts_per_tok: int = 0  # R
    moe_intermediate_size: int = 0  # F of each expert
    norm_topk_prob: bool = False  # renormalise the R chosen router probabilities to sum to 1
    decoder_sparse_step: int = 1  # layer i is MoE iff (i + 1) % step == 0 ...
    mlp_only_layers: tuple[int, ...] = ()  # ... and i is not listed here
    # Token ids carried through to the exported config.json.
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None
    # How to run it (not part of the checkpoint).
    dtype: str = "float32"  # compute dtype
    param_dtype: str = "float32"  # storage dtype
    remat: str = "none"  # per-layer rematerialisation: none | full | dots
    scan_layers: bool = True  # run runs of same-kind layers as one lax.scan (flat compile time)
    attention_block: int = 128  # query column blocks without a cache (models.attention.attend)
    moe_dispatch: str = "expert_parallel"  # a name in models.moe_dispatch.DISPATCH
    moe_chunk: int = 0  # MoE dispatch over this many positions of a row at a time; 0: whole rows
    attention_chunk: int = 0  # queries per attention chunk on long rows; 0: the whole row
    router_trainable: bool = True  # False: the router gets no gradient (frozen in RL)

    def __post_init__(self):
        ints = (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "decoder_sparse_step",
        )
        for name in ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ModelConfigError(name, f"must be a positive integer, got {value!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ModelConfigError(
                "num_key_value_heads",
                f"{self.num_key_value_heads} does not divide "
                f"num_attention_heads={self.num_attention_heads}",
            )
        if self.head_dim % 2:
            raise ModelConfigError("head_dim", f"RoPE needs an even head_dim, got {self.head_dim}")
        if self.rope_theta <= 0:
            raise ModelConfigError("rope_theta", f"must be positive, got {self.rope_theta}")
        if self.num_experts < 0:
            raise ModelConfigError("num_experts", f"must be >= 0, got {self.num_experts}")
        if self.num_experts:
            if not 1 <= self.num_experts_per_tok <= self.num_experts:
                raise ModelConfigError(
                    "num_experts_per_tok",
                    f"must be in [1, num_experts="
                    f"{self.num_experts}], got {self.num_experts_per_tok}",
                )
            if self.moe_intermediate_size <= 0:
                raise ModelConfigError("moe_intermediate_size", "must be positive for a MoE model")
        object.__setattr__(self, "mlp_only_layers", tuple(self.mlp_only_layers))
        if isinstance(self.eos_token_id, list):
            object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))
        for i in self.mlp_only_layers:
            if not 0 <= i < self.num_hidden_layers:
                raise ModelConfigError(
                    "mlp_only_layers",
                    f"layer {i} is outside [0, num_hidden_layers={self.num_hidden_layers})",
                )
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in DTYPES:
                raise ModelConfigError(
                    name, f"{getattr(self, name)!r} is not one of {sorted(DTYPES)}"
                )
        for name in ("attention_block", "moe_chunk", "attention_chunk"):
            if getattr(self, name) < 0:
                raise ModelConfigError(name, f"must be >= 0, got {getattr(self, name)}")
        if self.remat not in REMAT_CHOICES:
            raise ModelConfigError("remat", f"{self.remat!r} is not one of {REMAT_CHOICES}")

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def compute_dtype(self) -> jnp.dtype:
        return DTYPES[self.dtype]

    @property
    def storage_dtype(self) -> jnp.dtype:
        return DTYPES[self.param_dtype]

    def is_moe_layer(self, i: int) -> bool:
        """transformers' rule (Qwen3MoeDecoderLayer): sparse unless listed or off the step."""
        return (
            self.num_experts > 0
            and i not in self.mlp_only_layers
            and (i + 1) % self.decoder_sparse_step == 0
        )

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_hf_config(cls, hf: dict[str, Any], **overrides: Any) -> ModelConfig:
        """Reads a transformers `config.json` dict (model_type qwen3 or qwen3_moe).

        `overrides` set the run fields (dtype, param_dtype, remat, scan_layers, attention_block,
        moe_dispatch, moe_chunk, attention_chunk, router_trainable) or replace any field.
        Unsupported features (sliding window, attention bias, scaled RoPE) are errors, not
        silently ignored.
        """
        model_type = hf.get("model_type")
        if model_type not in _MODEL_TYPES:
            raise ModelConfigError(
                "model_type", f"{model_type!r} is not one of {sorted(_MODEL_TYPES)}"
            )
        if hf.get("use_sliding_window"):
            raise ModelConfigError(
                "use_sliding_window", "sliding-window attention is not supported"
            )
        if hf.get("attention_bias"):
            raise ModelConfigError("attention_bias", "attention biases are not supported")
        if hf.get("hidden_act", "silu") != "silu":
            raise ModelConfigError(
                "hidden_act", f"only 'silu' is supported, got {hf['hidden_act']!r}"
            )

        def get(name: str, kind: type, default: Any = dataclasses.MISSING) -> Any:
            value = hf.get(name)
            if value is None:
                if default is dataclasses.MISSING:
                    raise ModelConfigError(name, "missing")
                return default
            try:
                return kind(value)
            except (TypeError, ValueError):
                raise ModelConfigError(name, f"expected {kind.__name__}, got {value!r}") from None

        rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
        if not isinstance(rope, dict):
            raise ModelConfigError("rope_parameters", f"expected an object, got {rope!r}")
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise ModelConfigError("rope_parameters", f"rope_type {rope_type!r} is not supported")
        theta = rope.get("rope_theta", hf.get("rope_theta"))
        if theta is None:
            raise ModelConfigError(
                "rope_parameters",
                "no rope_theta (neither rope_parameters.rope_theta nor rope_theta)",
            )

        heads = get("num_attention_heads", int)
        hidden = get("hidden_size", int)
        fields: dict[str, Any] = dict(
            vocab_size=get("vocab_size", int),
            hidden_size=hidden,
            intermediate_size=get("intermediate_size", int),
            num_hidden_layers=get("num_hidden_layers", int),
            num_attention_heads=heads,
            num_key_value_heads=get("num_key_value_heads", int, heads),
            head_dim=get("head_dim", int, hidden // heads),
            rope_theta=float(theta),
            rms_norm_eps=get("rms_norm_eps", float, 1e-6),
            tie_word_embeddings=get("tie_word_embeddings", bool, False),
            max_position_embeddings=get("max_position_embeddings", int, 32768),
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=hf.get("eos_token_id"),
            pad_token_id=hf.get("pad_token_id"),
        )
        if model_type == "qwen3_moe":
            experts = hf.get("num_experts", hf.get("num_local_experts"))
            if experts is None:
                raise ModelConfigError(
                    "num_experts", "missing (neither num_experts nor num_local_experts)"
                )
            fields.update(
                num_experts=int(experts),
                num_experts_per_tok=get("num_experts_per_tok", int),
                moe_intermediate_size=get("moe_intermediate_size", int),
                norm_topk_prob=get("norm_topk_prob", bool, False),
                decoder_sparse_step=get("decoder_sparse_step", int, 1),
                mlp_only_layers=tuple(hf.get("mlp_only_layers") or ()),
            )
        fields.update(overrides)
        return cls(**fields)

    def to_hf_config(self) -> dict[str, Any]:
        """The `config.json` dict that transformers and SGLang read for this decoder."""
        model_type = "qwen3_moe" if self.is_moe else "qwen3"
        hf: dict[str, Any] = {
            "architectures": [_MODEL_TYPES[model_type]],
            "model_type": model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_parameters": {"rope_theta": self.rope_theta, "rope_type": "default"},
            # Older readers look for the top-level key.
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": False,
            "attention_dropout": 0.0,
            "use_sliding_window": False,
            "sliding_window": None,
            "use_cache": True,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": (
                list(self.eos_token_id)
                if isinstance(self.eos_token_id, tuple)
                else self.eos_token_id
            ),
            "pad_token_id": self.pad_token_id,
            "dtype": self.param_dtype,
        }
        if self.is_moe:
            hf.update(
                {
                    # transformers 5 writes num_local_experts; SGLang and older readers
                    # use num_experts.
                    "num_experts": self.num_experts,
                    "num_local_experts": self.num_experts,
                    "num_experts_per_tok": self.num_experts_per_tok,
                    "moe_intermediate_size": self.moe_intermediate_size,
                    "norm_topk_prob": self.norm_topk_prob,
                    "decoder_sparse_step": self.decoder_sparse_step,
                    "mlp_only_layers": list(self.mlp_only_layers),
                    "output_router_logits": False,
                    "router_aux_loss_coef": 0.0,
                }
            )
        return hf
