"""`pivotrl score` against transformers' log-softmax, and `pivotrl convert` round trips."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

from pivotrl_jax import cli
from pivotrl_jax.models.testing import random_tokens, reference_logits

WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran"]


def _ref_logprobs(ref, ids: list[int]) -> np.ndarray:
    """torch's log_softmax of transformers' logits, gathered at the next tokens."""
    import torch

    logits = torch.as_tensor(reference_logits(ref, np.asarray([ids]))[0])
    logp = torch.log_softmax(logits, dim=-1).numpy()
    return np.array([logp[t - 1, ids[t]] for t in range(1, len(ids))])


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _add_tokenizer(folder):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(folder)


@pytest.mark.parametrize("name", ["dense_untied_mha", "moe_topk_norm"])
def test_score_matches_transformers(name, reference, tmp_path):
    folder, ref = reference(name)
    seqs = [random_tokens(ref.config, 1, n, seed=n)[0].tolist() for n in (12, 3, 7, 1, 9)]
    rows = [{"input_ids": s, "id": i} for i, s in enumerate(seqs)]
    np.random.default_rng(0).shuffle(rows)
    inp = _write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    code = cli.main(
        [
            "score",
            "--model",
            str(folder),
            "--input",
            str(inp),
            "--output",
            str(out),
            "--batch-size",
            "2",
        ]
    )
    assert code == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["id"] for g in got] == [r["id"] for r in rows]  # input order and fields kept
    for row in got:
        want = _ref_logprobs(ref, row["input_ids"])
        assert len(row["logprobs"]) == len(row["input_ids"]) - 1
        np.testing.assert_allclose(row["logprobs"], want, atol=1e-4, rtol=0)


def test_score_text_uses_the_folder_tokenizer(reference, tmp_path):
    src, ref = reference("dense_tied_gqa4")
    folder = tmp_path / "model"
    shutil.copytree(src, folder)
    _add_tokenizer(folder)
    inp = _write_jsonl(tmp_path / "in.jsonl", [{"text": "the cat sat on a mat"}])
    out = tmp_path / "out.jsonl"
    assert (
        cli.main(["score", "--model", str(folder), "--input", str(inp), "--output", str(out)]) == 0
    )
    row = json.loads(out.read_text())
    ids = [WORDS.index(w) + 1 for w in ["the", "cat", "sat", "on", "a", "mat"]]
    np.testing.assert_allclose(row["logprobs"], _ref_logprobs(ref, ids), atol=1e-4, rtol=0)


def test_score_text_without_tokenizer_is_an_input_error(reference, tmp_path, capsys):
    folder, _ = reference("dense_tied_gqa4")
    inp = _write_jsonl(tmp_path / "in.jsonl", [{"text": "hello"}])
    code = cli.main(
        [
            "score",
            "--model",
            str(folder),
            "--input",
            str(inp),
            "--output",
            str(tmp_path / "out.jsonl"),
        ]
    )
    assert code == 2
    assert "tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "in.jsonl:2: not valid JSON"),
        ('{"input_ids": [1, "x"]}', "in.jsonl:2: input_ids: expected a list of integers"),
        ('{"input_ids": [1, 100000]}', "in.jsonl:2: input_ids: token id 100000 outside"),
        ('{"other": 1}', "in.jsonl:2: needs `input_ids` or `text`"),
        ('{"input_ids": []}', "in.jsonl:2: no tokens to score"),
    ],
)
def test_score_bad_line_names_file_and_line(reference, tmp_path, capsys, line, message):
    folder, _ = reference("dense_tied_gqa4")
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"input_ids": [1, 2, 3]}\n' + line + "\n")
    code = cli.main(
        [
            "score",
            "--model",
            str(folder),
            "--input",
            str(inp),
            "--output",
            str(tmp_path / "out.jsonl"),
        ]
    )
    assert code == 2
    assert message in capsys.readouterr().err


def test_convert_round_trip_is_bit_exact(reference, tmp_path):
    folder, _ = reference("moe_step2_mlp_only")
    src = tmp_path / "src"
    shutil.copytree(folder, src)
    _add_tokenizer(src)
    native, back = tmp_path / "native", tmp_path / "back"
    assert cli.main(["convert", "--input", str(src), "--output", str(native), "--to", "orbax"]) == 0
    assert (native / "params").is_dir() and (native / "tokenizer.json").is_file()
    assert (
        cli.main(
            [
                "convert",
                "--input",
                str(native),
                "--output",
                str(back),
                "--to",
                "hf",
                "--max-shard-mb",
                "1",
            ]
        )
        == 0
    )
    theirs = load_file(folder / "model.safetensors")
    ours = {}
    for f in back.glob("*.safetensors"):
        ours.update(load_file(f))
    assert ours.keys() == theirs.keys()
    assert all(
        ours[k].dtype == theirs[k].dtype and np.array_equal(ours[k], theirs[k]) for k in ours
    )
    assert (back / "tokenizer.json").is_file()
    # Scoring the converted-back folder and the native folder gives the same numbers.
    inp = _write_jsonl(tmp_path / "in.jsonl", [{"input_ids": [1, 5, 9, 2]}])
    for model_dir in (native, back):
        assert (
            cli.main(
                [
                    "score",
                    "--model",
                    str(model_dir),
                    "--input",
                    str(inp),
                    "--output",
                    str(tmp_path / f"{model_dir.name}.jsonl"),
                ]
            )
            == 0
        )
    assert (tmp_path / "native.jsonl").read_text() == (tmp_path / "back.jsonl").read_text()


def test_convert_refuses_a_non_empty_output(reference, tmp_path, capsys):
    folder, _ = reference("dense_untied_mha")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    assert (
        cli.main(
            ["convert", "--input", str(folder), "--output", str(tmp_path / "out"), "--to", "orbax"]
        )
        == 2
    )
    assert "not empty" in capsys.readouterr().err
