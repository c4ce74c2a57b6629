"""Fixtures of the data tests: a small SFT file and the tiny project tokenizer."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from data_samples import traj_plain, traj_shell, traj_weather, write_jsonl


@pytest.fixture
def sft_file(tmp_path):
    return write_jsonl(tmp_path / "sft.jsonl", [traj_weather(), traj_shell(), traj_plain()])


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory):
    from pivotrl_jax.data.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("tiny_tokenizer")
    train_tokenizer([], vocab_size=1024, out_dir=out)
    return str(out)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
