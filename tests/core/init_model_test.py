"""`pivotrl init-model`: the written folder loads in transformers and our model gives its logits."""

import json
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pivotrl_jax import cli


@pytest.mark.parametrize("variant", ["tiny", "tiny-moe"])
def test_init_model_loads_in_transformers(tmp_path, variant):
    import torch
    import transformers

    from pivotrl_jax.models import load_model

    out = tmp_path / variant
    overrides = ["--config.model.num_hidden_layers=2", "--config.tokenizer.vocab_size=400"]
    assert (
        cli.main(
            ["init-model", f"--config=configs/model.py:{variant}", *overrides, "--output", str(out)]
        )
        == 0
    )
    hf_cfg = json.loads((out / "config.json").read_text())
    assert hf_cfg["num_hidden_layers"] == 2
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert len(tok) == hf_cfg["vocab_size"] == 400
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    tools = [
        {
            "type": "function",
            "function": {
                "name": "ls",
                "description": "list files",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]
    text = tok.apply_chat_template(
        [{"role": "user", "content": "list the files"}],
        tools=tools,
        tokenize=False,
        add_generation_prompt=True,
    )
    assert '"name": "ls"' in text and text.endswith("<|im_start|>assistant\n")

    ids = tok(text, add_special_tokens=False)["input_ids"]
    ref = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        want = ref(torch.tensor([ids])).logits[0].numpy()
    model, _ = load_model(out)
    x = np.asarray([ids], dtype=np.int32)
    mask = np.ones_like(x)
    pos = np.arange(len(ids), dtype=np.int32)[None]
    got, _ = model(x, pos, mask)
    np.testing.assert_allclose(np.asarray(got[0]), want, atol=1e-4)
    resolved = json.loads((out / "pivotrl_config.json").read_text())
    assert resolved["config"]["variant"] == variant


def test_init_model_rejects_small_vocab(tmp_path, capsys):
    rc = cli.main(
        [
            "init-model",
            "--config=configs/model.py:tiny",
            "--config.model.vocab_size=300",
            "--config.tokenizer.vocab_size=400",
            "--output",
            str(tmp_path / "m"),
        ]
    )
    assert rc == 2
    assert "vocab_size" in capsys.readouterr().err
