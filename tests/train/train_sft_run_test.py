"""`pivotrl sft` lowers the NLL of the assistant turns it trains on, with the loss on assistant
tokens only; `pivotrl export` writes an HF folder that loads back to the trained parameters."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from transformers import AutoTokenizer

    from pivotrl_jax import cli
    from pivotrl_jax.data import chat
    from pivotrl_jax.data import records as records_io
    from pivotrl_jax.data.schema import Message

    root = tmp_path_factory.mktemp("sft")
    model = root / "model"
    args = [
        "init-model",
        "--config=configs/model.py:tiny",
        "--config.model.num_hidden_layers=2",
        "--config.tokenizer.vocab_size=400",
        "--output",
        str(model),
    ]
    assert cli.main(args) == 0
    tok = AutoTokenizer.from_pretrained(model)
    recs = []
    for i in range(8):
        state = [Message("user", content=f"please list the files in folder {i}")]
        action = Message("assistant", content=f"the folder {i} holds two files")
        recs.append(
            {
                "id": f"c{i}",
                "prompt_ids": chat.prompt_ids(tok, state, []),
                "completion_ids": chat.completion_ids(tok, action),
                "trajectory_id": f"t{i}",
            }
        )
    records_io.write_records(root / "candidates", recs, prefix="candidates")
    return root, recs


def test_sft_mask_covers_the_assistant_span_only():
    from pivotrl_jax.train.batching import make_batch
    from pivotrl_jax.train.sft import record_sequence

    rec = {"prompt_ids": [5, 6, 7], "completion_ids": [8, 9]}
    seq = record_sequence(rec, max_len=16)
    batch = make_batch([seq], length_buckets=(8,))
    # Targets 8 and 9 are predicted at positions 2 and 3; the prompt is never a target.
    np.testing.assert_array_equal(batch.loss_mask[0], [0, 0, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(batch.targets[0, 2:4], [8, 9])
    assert record_sequence(rec, max_len=4) is None
    assert record_sequence({"prompt_ids": [1], "completion_ids": None}, 16) is None


def test_sft_then_export(assets, tmp_path):
    import jax
    import jax.numpy as jnp

    from pivotrl_jax import cli
    from pivotrl_jax.models import load_model
    from pivotrl_jax.models.sharding import single_device_mesh
    from pivotrl_jax.train import state as st
    from pivotrl_jax.train.metrics import read_metrics
    from pivotrl_jax.train.sft import nll, record_sequence
    from pivotrl_jax.train.step import make_logprobs_fn

    root, recs = assets
    run, hf = tmp_path / "run", tmp_path / "hf"
    args = [
        "sft",
        "--config=configs/train.py:tiny,sft",
        f"--config.model_dir={root / 'model'}",
        f"--config.trajectories={root / 'candidates'}",
        "--config.sft.steps=8",
        "--config.log.progress=false",
        "--config.checkpoint.every=4",
        "--output",
        str(run),
    ]
    assert cli.main(args) == 0
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert all(r["update_skipped"] == 0 for r in rows)
    assert cli.main(["export", "--run", str(run), "--output", str(hf)]) == 0
    assert (hf / "config.json").exists() and (hf / "tokenizer.json").exists()

    mesh = single_device_mesh()
    before, cfg = load_model(root / "model", mesh=mesh)
    after, _ = load_model(hf, mesh=mesh)
    from flax import nnx

    p0 = nnx.to_pure_dict(nnx.state(before, nnx.Param))
    p1 = nnx.to_pure_dict(nnx.state(after, nnx.Param))
    policy = st.make_policy(cfg, mesh)
    fn = make_logprobs_fn(policy)
    seqs = [record_sequence(r, 1024) for r in recs]
    nll0 = nll(fn, p0, seqs, policy, (128,))
    nll1 = nll(fn, p1, seqs, policy, (128,))
    assert nll1 < nll0 - 0.5, (nll0, nll1)  # lr 1e-3, 8 steps on 8 turns
    # The exported folder holds exactly the checkpoint's parameters.
    from pivotrl_jax.train.checkpoint import Checkpointer
    from pivotrl_jax.train.optim import OptimConfig, make_optimizer

    optim = OptimConfig(**json.loads((run / "config.json").read_text())["config"]["optim"])
    with Checkpointer(run / "checkpoints") as ckpt:
        assert ckpt.all_steps() == [4, 8]
        state, _ = ckpt.restore(
            8, st.abstract_train_state(policy, make_optimizer(optim), jnp.float32)
        )
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(p1)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
