"""Fixtures of the reliability tests: a tiny model, short SFT trajectories and their candidates.

Tests marked `long` (many kill points, minutes each) run only under `make reliability`
(PIVOTRL_RELIABILITY=1); `make test` runs the short variants.
"""

import json
import os

import pytest
from reliability_data import trajectory

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LONG = os.environ.get("PIVOTRL_RELIABILITY") == "1"


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="long reliability run: `make reliability`")
    for item in items:
        if "long" in item.keywords and not LONG:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    """model/ (tiny dense Qwen3, 1 layer, 300-token vocabulary), sft.jsonl (24 trajectories),
    cands/ (their 48 candidates in 6 shards, verifier `test_parity`), jax-cache/."""
    from pivotrl_jax import cli

    root = tmp_path_factory.mktemp("reliability")
    args = [
        "init-model",
        "--config=configs/model.py:tiny",
        "--config.model.num_hidden_layers=1",
        "--config.tokenizer.vocab_size=300",
        "--output",
        str(root / "model"),
    ]
    assert cli.main(args) == 0
    sft = root / "sft.jsonl"
    sft.write_text("".join(json.dumps(trajectory(i)) + "\n" for i in range(24)))
    args = [
        "extract",
        "--input",
        str(sft),
        "--output",
        str(root / "cands"),
        "--tokenizer",
        str(root / "model"),
        "--config.default_verifier=test_parity",
        "--config.shard_size=8",
    ]
    import pivotrl_with_test_verifier  # noqa: F401  (registers test_parity in this process)

    assert cli.main(args) == 0
    (root / "jax-cache").mkdir()
    return root
