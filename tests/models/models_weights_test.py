"""HF safetensors import/export against transformers, the native orbax layout, located errors."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from pivotrl_jax.models import (
    WeightsError,
    export_hf,
    load_hf,
    load_model,
    load_native,
    save_native,
)
from pivotrl_jax.models.testing import random_tokens, reference_logits


def _params(model):
    return {
        ".".join(map(str, p)): np.asarray(v.get_value())
        for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
    }


def _assert_bit_equal(a, b):
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        assert pa[k].dtype == pb[k].dtype and np.array_equal(pa[k], pb[k]), k


def _torch_logits(folder, ids):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return reference_logits(model, ids)


@pytest.mark.parametrize("name", ["dense_tied_gqa4", "moe_step2_mlp_only"])
def test_export_loads_in_transformers_with_same_logits(name, reference, tmp_path):
    folder, ref = reference(name)
    model, config = load_hf(folder)
    out = export_hf(model, config, tmp_path / "out", max_shard_bytes=30_000)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 1 and all((out / f).is_file() for f in files)
    if config.is_moe:  # per-expert tensors and the router under transformers' names
        assert "model.layers.1.mlp.experts.3.down_proj.weight" in index["weight_map"]
        assert "model.layers.1.mlp.gate.weight" in index["weight_map"]
    ids = random_tokens(config, batch=2, length=7, seed=5)
    np.testing.assert_allclose(
        _torch_logits(out, ids), reference_logits(ref, ids), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("name", ["dense_untied_mha", "moe_topk_norm"])
def test_import_export_import_is_bit_exact(name, reference, tmp_path):
    folder, _ = reference(name)
    first, config = load_hf(folder)
    export_hf(first, config, tmp_path / "hf", max_shard_bytes=10_000)
    second, config2 = load_hf(tmp_path / "hf")
    assert config2 == config
    _assert_bit_equal(first, second)
    # The exported tensors are transformers' own, bit for bit.
    theirs = load_file(folder / "model.safetensors")
    ours = {}
    for f in (tmp_path / "hf").glob("*.safetensors"):
        ours.update(load_file(f))
    assert ours.keys() == theirs.keys()
    assert all(np.array_equal(ours[k], theirs[k]) for k in ours)


def test_loads_transformers_sharded_checkpoint(reference, tmp_path):
    _, ref = reference("moe_topk_raw_mha")
    ref.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    model, config = load_hf(tmp_path)
    ids = random_tokens(config, batch=1, length=6, seed=6)
    pos = np.arange(6)[None]
    got = np.asarray(jax.jit(lambda m, *a: m(*a)[0])(model, ids, pos, np.ones_like(ids)))
    np.testing.assert_allclose(got, reference_logits(ref, ids), atol=1e-4, rtol=0)


def test_bfloat16_round_trip(reference, tmp_path):
    folder, _ = reference("dense_untied_mha")
    model, config = load_hf(folder, param_dtype="bfloat16")
    export_hf(model, config, tmp_path / "bf16")
    assert json.loads((tmp_path / "bf16/config.json").read_text())["dtype"] == "bfloat16"
    again, config2 = load_hf(tmp_path / "bf16")  # param dtype follows the file
    assert config2.param_dtype == "bfloat16"
    _assert_bit_equal(model, again)


def test_native_layout_round_trip(reference, tmp_path):
    folder, _ = reference("moe_tied")
    model, config = load_hf(folder)
    save_native(model, config, tmp_path / "native", aux_from=folder)
    restored, config2 = load_model(tmp_path / "native")
    assert config2 == config
    _assert_bit_equal(model, restored)
    cast, config3 = load_native(tmp_path / "native", dtype="bfloat16", param_dtype="bfloat16")
    assert config3.param_dtype == "bfloat16"
    assert all(v.dtype == np.dtype("bfloat16") for v in _params(cast).values())


def _copy_and_edit(src, dst, edit):
    shutil.copytree(src, dst)
    tensors = load_file(dst / "model.safetensors")
    edit(tensors)
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_missing_tensor_is_named(reference, tmp_path):
    folder, _ = reference("moe_topk_norm")
    name = "model.layers.1.mlp.experts.2.up_proj.weight"
    bad = _copy_and_edit(folder, tmp_path / "bad", lambda t: t.pop(name))
    with pytest.raises(WeightsError, match=r"missing tensor model\.layers\.1\.mlp\.experts\.2"):
        load_hf(bad)


def test_unexpected_tensor_is_named_with_its_file(reference, tmp_path):
    folder, _ = reference("dense_untied_mha")
    bad = _copy_and_edit(
        folder,
        tmp_path / "bad",
        lambda t: t.update({"model.layers.9.mlp.gate_proj.weight": np.zeros((2, 2), np.float32)}),
    )
    with pytest.raises(
        WeightsError,
        match=r"model\.layers\.9\.mlp\.gate_proj\.weight "
        r"\(in .*model\.safetensors\)",
    ):
        load_hf(bad)


def test_wrong_shape_is_named_with_its_file(reference, tmp_path):
    folder, _ = reference("dense_untied_mha")

    def shrink(t):
        t["model.layers.0.self_attn.k_proj.weight"] = t["model.layers.0.self_attn.k_proj.weight"][
            :-1
        ]

    bad = _copy_and_edit(folder, tmp_path / "bad", shrink)
    with pytest.raises(
        WeightsError,
        match=r"k_proj\.weight in .*model\.safetensors has shape "
        r"\(31, 32\), the config expects \(32, 32\)",
    ):
        load_hf(bad)


def test_index_pointing_at_a_missing_file(reference, tmp_path):
    folder, _ = reference("dense_untied_mha")
    model, config = load_hf(folder)
    out = export_hf(model, config, tmp_path / "hf", max_shard_bytes=10_000)
    victim = sorted(out.glob("*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(WeightsError, match=victim.name):
        load_hf(out)


def test_no_weights_is_an_error(tmp_path):
    from pivotrl_jax.models.testing import TINY_CONFIGS, write_hf_config

    write_hf_config(TINY_CONFIGS["dense_untied_mha"], tmp_path)
    with pytest.raises(WeightsError, match=r"neither model\.safetensors nor"):
        load_hf(tmp_path)
