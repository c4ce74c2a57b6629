"""ModelConfig <-> HF config.json: both key spellings, round trips, errors that name the field."""

from __future__ import annotations

import json

import pytest

from pivotrl_jax.models import ModelConfig, ModelConfigError, read_config
from pivotrl_jax.models.testing import TINY_CONFIGS

_QWEN3_MOE_JSON = {  # the keys transformers 5.24 writes for Qwen3MoeConfig(...).save_pretrained
    "architectures": ["Qwen3MoeForCausalLM"],
    "model_type": "qwen3_moe",
    "vocab_size": 64,
    "hidden_size": 32,
    "intermediate_size": 48,
    "moe_intermediate_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 12,
    "num_local_experts": 4,
    "num_experts_per_tok": 2,
    "norm_topk_prob": False,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
    "tie_word_embeddings": False,
    "use_sliding_window": False,
    "sliding_window": None,
    "attention_bias": False,
    "hidden_act": "silu",
    "dtype": "float32",
}


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_hf_round_trip(name):
    cfg = TINY_CONFIGS[name]
    assert ModelConfig.from_hf_config(cfg.to_hf_config()) == cfg


def test_reads_transformers5_moe_keys():
    cfg = ModelConfig.from_hf_config(_QWEN3_MOE_JSON)
    assert (cfg.num_experts, cfg.head_dim, cfg.rope_theta) == (4, 12, 10000.0)
    assert [cfg.is_moe_layer(i) for i in range(2)] == [True, True]


def test_reads_older_keys():
    old = dict(_QWEN3_MOE_JSON, num_experts=4, rope_theta=5e5)
    del old["num_local_experts"], old["rope_parameters"], old["head_dim"]
    cfg = ModelConfig.from_hf_config(old)
    assert (cfg.num_experts, cfg.rope_theta, cfg.head_dim) == (4, 5e5, 32 // 4)


def test_writes_what_sglang_and_transformers_read():
    hf = TINY_CONFIGS["moe_topk_norm"].to_hf_config()
    assert hf["architectures"] == ["Qwen3MoeForCausalLM"] and hf["model_type"] == "qwen3_moe"
    assert hf["num_experts"] == hf["num_local_experts"] == 4
    assert hf["rope_parameters"] == {"rope_theta": 10000.0, "rope_type": "default"}
    assert TINY_CONFIGS["dense_tied_gqa4"].to_hf_config()["architectures"] == ["Qwen3ForCausalLM"]


def test_sparse_layer_rule_matches_transformers():
    # transformers: MoE iff i not in mlp_only_layers and (i + 1) % decoder_sparse_step == 0.
    cfg = TINY_CONFIGS["moe_step2_mlp_only"]  # 4 layers, step 2, mlp_only (3,)
    assert [cfg.is_moe_layer(i) for i in range(4)] == [False, True, False, False]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model_type": "llama"}, "model_type"),
        ({"use_sliding_window": True}, "use_sliding_window"),
        ({"rope_parameters": {"rope_theta": 1e4, "rope_type": "yarn"}}, "rope_parameters"),
        ({"num_experts_per_tok": 9}, "num_experts_per_tok"),
        ({"num_key_value_heads": 3}, "num_key_value_heads"),
        ({"mlp_only_layers": [5]}, "mlp_only_layers"),
        ({"hidden_size": "wide"}, "hidden_size"),
    ],
)
def test_errors_name_the_field(change, field):
    with pytest.raises(ModelConfigError, match=field) as e:
        ModelConfig.from_hf_config({**_QWEN3_MOE_JSON, **change})
    assert e.value.field == field


def test_missing_field_and_file_are_named(tmp_path):
    broken = dict(_QWEN3_MOE_JSON)
    del broken["vocab_size"]
    (tmp_path / "config.json").write_text(json.dumps(broken))
    with pytest.raises(ModelConfigError, match=r"vocab_size.*config\.json"):
        read_config(tmp_path)


def test_run_fields_are_validated():
    with pytest.raises(ModelConfigError, match="remat"):
        TINY_CONFIGS["dense_untied_mha"].replace(remat="some")
    with pytest.raises(ModelConfigError, match="param_dtype"):
        TINY_CONFIGS["dense_untied_mha"].replace(param_dtype="float16")


def test_read_config_follows_the_stored_dtype(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(dict(_QWEN3_MOE_JSON, dtype="bfloat16")))
    cfg = read_config(tmp_path)
    assert (cfg.param_dtype, cfg.dtype) == ("bfloat16", "bfloat16")
    cfg = read_config(tmp_path, dtype="float32", param_dtype="float32")
    assert (cfg.param_dtype, cfg.dtype) == ("float32", "float32")
