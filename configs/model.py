"""Model sizes for `pivotrl init-model` (a random model plus the project tokenizer, HF layout).

    pivotrl init-model --config=configs/model.py:tiny-moe --output runs/tiny-moe
    pivotrl init-model --config=configs/model.py:small --config.model.num_hidden_layers=4 --output m

Variants (vocab_size 0 = the trained tokenizer's size):
    tiny       dense,  D=64,  4 layers, ~0.2M params with the 1024-token vocabulary
    tiny-moe   MoE,    D=64,  4 layers, 8 experts top-2
    small      dense,  D=512, 8 layers, 8 heads / 4 KV heads, F=2048: ~50M params at V=32768
    small-moe  MoE,    D=512, 8 layers, 32 experts top-4, expert F=512: ~50M active at V=32768
"""

from ml_collections import config_dict

VARIANTS = {
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
    ),
    "tiny-moe": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=64,
        norm_topk_prob=True,
    ),
    "small": dict(
        hidden_size=512,
        intermediate_size=2048,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=64,
        vocab_size=32768,
    ),
    "small-moe": dict(
        hidden_size=512,
        intermediate_size=2048,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=64,
        num_experts=32,
        num_experts_per_tok=4,
        moe_intermediate_size=512,
        norm_topk_prob=True,
        vocab_size=32768,
    ),
}


def model_section(variant: str) -> config_dict.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown model variant {variant!r}; known: {', '.join(VARIANTS)}")
    m = dict(
        vocab_size=0,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,  # SGLang's Qwen3-MoE ignores tying: keep MoE untied
        max_position_embeddings=4096,
        num_experts=0,
        num_experts_per_tok=0,
        moe_intermediate_size=0,
        norm_topk_prob=False,
        decoder_sparse_step=1,
        mlp_only_layers=(),
        dtype="float32",
        param_dtype="float32",
        remat="none",
        moe_dispatch="dense",
    )
    m.update(VARIANTS[variant])
    return config_dict.ConfigDict(m)


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    c = config_dict.ConfigDict()
    c.variant = arg or "tiny"
    c.seed = 0
    c.model = model_section(c.variant)
    c.tokenizer = config_dict.ConfigDict(
        dict(
            vocab_size=1024,  # BPE vocabulary trained on the shipped corpus (+ extra files)
            extra_text_files=(),  # more training text, one document per line
            from_dir="",  # reuse the tokenizer in this folder instead of training one
            # Encode the chat template's fixed text (tool preamble, call and response wrappers)
            # as one token per phrase, plus the phrases in phrase_files (JSON lists of strings:
            # a domain's fixed prompt text such as its tool specs).
            phrases=False,
            phrase_files=(),
        )
    )
    return c
