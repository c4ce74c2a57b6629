"""Malformed inputs through the `pivotrl` command line: each exits with code 2 and one message
that names the place (file, line or record, field or key), never a traceback.

Reader-level cases (every way a trajectory or pivot row can be wrong, with the exact field) are
in tests/data/malformed_inputs_test.py; here the same kinds of damage reach the commands, plus
record shards, configs and overrides, model and tokenizer folders, verifier cases and the
command line itself. `--on_error=skip` variants check that skipped inputs are counted.
"""

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from reliability_data import trajectory

from pivotrl_jax import cli
from pivotrl_jax.data import records as records_io

pytestmark = pytest.mark.slow


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path, Path], list[str]]  # (tmp, assets) -> argv; writes the bad input
    expect: tuple[str, ...]  # substrings of the message; "{tmp}" is the case's folder


def _jsonl(path: Path, rows: list) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def _extract(tmp, assets, rows, *extra):
    return ["extract", "--input", _jsonl(tmp / "in.jsonl", rows), "--output", str(tmp / "o"),
            *extra]  # fmt: skip


def _traj(**changes):
    t = trajectory(0)
    t.update(changes)
    return t


def _row(**changes):
    row = {
        "responses_create_params": {"input": [{"role": "user", "content": "hi"}]},
        "expected_action": {"type": "function_call", "name": "f", "arguments": "{}"},
    }
    row.update(changes)
    return row


def _cands(tmp, assets, edit=None, shard_size=8):
    """A copy of the candidates with record `edit[0]` (0-based) changed by `edit[1]`."""
    recs = list(records_io.read_records(assets / "cands", prefix="candidates"))
    if edit is not None:
        index, change = edit
        recs[index] = change(dict(recs[index]))
    records_io.write_records(tmp / "cands", recs, shard_size=shard_size, prefix="candidates")
    return tmp / "cands"


def _profile(tmp, assets, cands=None, *extra, model=None):
    return [
        "profile",
        "--candidates",
        str(cands or assets / "cands"),
        "--output",
        str(tmp / "o"),
        f"--config.model_dir={model or assets / 'model'}",
        "--noprogress",
        "--config.profile.k=1",  # should a case not fail, its run is short
        "--config.profile.max_new_tokens=1",
        *extra,
    ]


def _train(tmp, assets, pivots=None, *extra, model=None):
    return [
        "train",
        "--config=configs/train.py:tiny",
        f"--config.model_dir={model or assets / 'model'}",
        f"--config.pivots={pivots or assets / 'cands'}",
        "--config.pivots_prefix=candidates",
        "--config.train.steps=1",
        "--output",
        str(tmp / "o"),
        *extra,
    ]


def _sft(tmp, assets, trajectories=None, *extra):
    return [
        "sft",
        "--config=configs/train.py:sft,tiny",
        f"--config.model_dir={assets / 'model'}",
        f"--config.trajectories={trajectories or assets / 'cands'}",
        "--config.sft.steps=1",
        "--output",
        str(tmp / "o"),
        *extra,
    ]


def _model(tmp, assets, change):
    """A copy of the tiny model folder with `change(folder)` applied."""
    folder = tmp / "model"
    shutil.copytree(assets / "model", folder)
    change(folder)
    return folder


def _rewrite_weights(folder, change):
    from safetensors.numpy import load_file, save_file

    (path,) = folder.glob("*.safetensors")
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def _damage_shard(tmp, assets, how):
    cands = _cands(tmp, assets)
    shard = sorted(cands.glob("candidates-*"))[2]
    how(shard)
    return _profile(tmp, assets, cands)


def _raw_record_shard(tmp, raws):
    from array_record.python import array_record_module

    (tmp / "cands").mkdir()
    w = array_record_module.ArrayRecordWriter(
        str(tmp / "cands" / "candidates-00000-of-00001.array_record"), "group_size:1"
    )
    for raw in raws:
        w.write(raw)
    w.close()
    return tmp / "cands"


def _verify(tmp, rows, *extra):
    return ["verify", "--input", _jsonl(tmp / "cases.jsonl", rows), "--output",
            str(tmp / "scored.jsonl"), *extra]  # fmt: skip


GOOD_CASE = {
    "expected_action": {"type": "function_call", "name": "f", "arguments": "{}"},
    "response": '<tool_call>{"name": "f", "arguments": {}}</tool_call>',
}
SHARD = "{tmp}/cands/candidates-00000-of-00006.array_record"

CASES = [
    # -- trajectories (pivotrl extract) ------------------------------------------------------
    Case("traj_bad_json", lambda t, a: _extract(t, a, [_traj(), '{"messages": [']),
         ("{tmp}/in.jsonl:2: not valid JSON",)),
    Case("traj_unknown_role", lambda t, a: _extract(t, a, [_traj(messages=[
        {"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}])]),
         ("{tmp}/in.jsonl:1: messages[0].role: unknown role 'robot'",)),
    Case("traj_arguments_not_json", lambda t, a: _extract(t, a, [_traj(messages=[
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [
            {"id": "c", "function": {"name": "f", "arguments": "{oops"}}]}])]),
         ("{tmp}/in.jsonl:1: messages[1].tool_calls[0].function.arguments",)),
    Case("traj_missing_file", lambda t, a: ["extract", "--input", str(t / "nope.jsonl"),
                                            "--output", str(t / "o")],
         ("{tmp}/nope.jsonl: input file not found",)),
    Case("traj_not_utf8", lambda t, a: (
        (t / "in.jsonl").write_bytes(b'{"id": "caf\xe9"}\n'),
        ["extract", "--input", str(t / "in.jsonl"), "--output", str(t / "o")])[1],
         ("{tmp}/in.jsonl:1: bytes that are not UTF-8",)),
    Case("traj_duplicate_id", lambda t, a: _extract(t, a, [_traj(), _traj()]),
         ("{tmp}/in.jsonl:2: id: duplicate id 'traj0'",)),
    Case("traj_messages_not_list", lambda t, a: _extract(t, a, [_traj(messages="hello")]),
         ("{tmp}/in.jsonl:1: messages",)),
    Case("traj_damaged_parquet", lambda t, a: (
        (t / "in.parquet").write_bytes(b"PAR1 not really"),
        ["extract", "--input", str(t / "in.parquet"), "--output", str(t / "o")])[1],
         ("{tmp}/in.parquet: cannot read",)),
    Case("traj_empty_dataset_folder", lambda t, a: (
        (t / "ds").mkdir(), ["extract", "--input", str(t / "ds"), "--output", str(t / "o")])[1],
         ("{tmp}/ds: cannot read",)),
    # -- pivot rows (pivotrl extract) --------------------------------------------------------
    Case("row_arguments_not_json", lambda t, a: _extract(t, a, [_row(expected_action={
        "type": "function_call", "name": "f", "arguments": "{oops"})]),
         ("{tmp}/in.jsonl:1: expected_action.arguments",)),
    Case("row_unknown_action_type", lambda t, a: _extract(t, a, [_row(expected_action={
        "type": "shout"})]), ("{tmp}/in.jsonl:1: expected_action.type",)),
    Case("row_input_not_list", lambda t, a: _extract(t, a, [_row(
        responses_create_params={"input": 42})]),
         ("{tmp}/in.jsonl:1: responses_create_params.input",)),
    Case("row_no_expected_action", lambda t, a: _extract(t, a, [
        {"responses_create_params": {"input": [{"role": "user", "content": "hi"}]}}]),
         ("{tmp}/in.jsonl:1: expected_action",)),
    # -- record shards (profile, train, sft, select) -----------------------------------------
    Case("shards_missing_folder", lambda t, a: _profile(t, a, t / "nowhere"),
         ("{tmp}/nowhere: folder not found",)),
    Case("shards_incomplete_set", lambda t, a: _damage_shard(t, a, lambda s: s.unlink()),
         ("{tmp}/cands: incomplete or mixed shard set",)),
    Case("shards_truncated", lambda t, a: _damage_shard(
        t, a, lambda s: s.write_bytes(s.read_bytes()[:5000])),
         ("{tmp}/cands/candidates-00002-of-00006.array_record: damaged record shard",)),
    Case("shards_bit_flip", lambda t, a: _damage_shard(
        t, a, lambda s: s.write_bytes(s.read_bytes()[:90] + b"\xff" + s.read_bytes()[91:])),
         ("{tmp}/cands/candidates-00002-of-00006.array_record: damaged record shard",)),
    Case("record_not_json", lambda t, a: _profile(t, a, _raw_record_shard(t, [b"{oops"])),
         ("{tmp}/cands/candidates-00000-of-00001.array_record:1: record is not readable",)),
    Case("record_not_object", lambda t, a: _profile(t, a, _raw_record_shard(t, [b"[1, 2]"])),
         ("candidates-00000-of-00001.array_record:1: record is a JSON list",)),
    Case("record_without_prompt_ids", lambda t, a: _profile(t, a, _cands(t, a, (
        3, lambda r: {k: v for k, v in r.items() if k != "prompt_ids"}))),
         (SHARD + ":4: prompt_ids: missing",)),
    Case("record_token_outside_vocab", lambda t, a: _profile(t, a, _cands(t, a, (
        1, lambda r: {**r, "prompt_ids": [*r["prompt_ids"][:3], 4096, *r["prompt_ids"][4:]]}))),
         (SHARD + ":2: prompt_ids[3]: token id 4096 is not in [0, 300)",)),
    Case("record_prompt_ids_text", lambda t, a: _profile(t, a, _cands(t, a, (
        0, lambda r: {**r, "prompt_ids": "1 2 3"}))),
         (SHARD + ":1: prompt_ids: expected a list of token ids, got str",)),
    Case("record_bad_expected_action", lambda t, a: _profile(t, a, _cands(t, a, (
        5, lambda r: {**r, "expected_action": {"type": "function_call", "name": "f",
                                               "arguments": "{oops"}}))),
         (SHARD + ":6: expected_action: not a valid action",)),
    Case("record_unknown_verifier", lambda t, a: _profile(t, a, _cands(t, a, (
        2, lambda r: {**r, "verifier": "no_such_verifier", "domain": "x"}))),
         (SHARD + ":3: verifier: verifier 'no_such_verifier'",)),
    Case("record_id_missing", lambda t, a: _profile(t, a, _cands(t, a, (
        7, lambda r: {k: v for k, v in r.items() if k != "id"}))), (SHARD + ":8: id: missing",)),
    Case("pivot_prompt_too_long", lambda t, a: _train(t, a, _cands(t, a, (
        4, lambda r: {**r, "prompt_ids": [5] * 600}))),
         (SHARD + ":5: prompt_ids: 600 tokens, over train.max_prompt_len 512",)),
    Case("pivot_messages_not_list", lambda t, a: _train(t, a, _cands(t, a, (
        0, lambda r: {**r, "messages": "hi"}))), (SHARD + ":1: messages: expected a list",)),
    Case("sft_completion_ids_not_list", lambda t, a: _sft(t, a, _cands(t, a, (
        6, lambda r: {**r, "completion_ids": {"a": 1}}))),
         (SHARD + ":7: completion_ids: expected a list of token ids",)),
    Case("sft_completion_mask_wrong_length", lambda t, a: _sft(t, a, _cands(t, a, (
        6, lambda r: {**r, "completion_mask": [1.0]}))), (SHARD + ":7: completion_mask",)),
    Case("select_unfinished_profile", lambda t, a: (
        (t / "prof").mkdir(), (t / "prof" / "journal-p00000-of-00001.jsonl").write_text(""),
        ["select", "--profiled", str(t / "prof"), "--output", str(t / "o")])[2],
         ("{tmp}/prof: ", "profiling unfinished")),
    Case("export_not_a_run", lambda t, a: ["export", "--run", str(t), "--output", str(t / "o")],
         ("{tmp}: not a training run folder",)),
    # -- configs and overrides ---------------------------------------------------------------
    Case("config_unknown_key", lambda t, a: _profile(t, a, None, "--config.profile.kk=2"),
         ("unknown config key 'profile.kk'",)),
    Case("config_wrong_type", lambda t, a: _profile(t, a, None, "--config.profile.k=two"),
         ("profile.k",)),
    Case("config_missing_file", lambda t, a: ["profile", "--config=configs/nope.py",
                                              "--candidates", "c", "--output", "o"],
         ("config file 'configs/nope.py' not found",)),
    Case("config_unknown_variant", lambda t, a: [
        *_train(t, a)[:1], "--config=configs/train.py:tinyy", *_train(t, a)[2:]],
         ("configs/train.py:tinyy", "unknown train variant 'tinyy'")),
    Case("config_file_syntax_error", lambda t, a: (
        (t / "bad.py").write_text("def get_config(:\n"),
        ["profile", f"--config={t / 'bad.py'}", "--candidates", "c", "--output", "o"])[1],
         ("{tmp}/bad.py", "SyntaxError")),
    Case("config_required_missing", lambda t, a: ["profile", "--candidates", str(a / "cands"),
                                                  "--output", str(t / "o")],
         ("required config field 'model_dir'",)),
    Case("config_k_zero", lambda t, a: _profile(t, a, None, "--config.profile.k=0"),
         ("profile config: k must be >= 1, got 0",)),
    Case("config_steps_zero", lambda t, a: _train(t, a, None, "--config.train.steps=0"),
         ("steps must be >= 1, got 0",)),
    Case("config_unknown_engine", lambda t, a: _profile(t, a, None, "--config.engine.name=vllm"),
         ("'vllm'", "engine builder")),
    Case("config_unknown_verifier_for_all", lambda t, a: _train(
        t, a, None, "--config.verifier_for_all=no_such_verifier"),
         ("verifier_for_all:", "'no_such_verifier'")),
    Case("config_unknown_domain_verifier", lambda t, a: [*_profile(t, a)[:1],
         "--config=configs/profile.py:envs", *_profile(t, a)[1:],
         "--config.verifiers.terminal.name=no_such_verifier"],
         ("verifiers.terminal:", "'no_such_verifier'")),
    Case("config_bad_verifier_param", lambda t, a: [*_profile(t, a)[:1],
         "--config=configs/profile.py:envs", *_profile(t, a)[1:],
         "--config.verifiers.terminal.name=shell"],  # with env_acceptable's params
         ("verifiers.terminal:", "verifier 'shell' has no parameter domain")),
    Case("config_mesh_does_not_divide", lambda t, a: _train(
        t, a, None, "--config.mesh_shape=(3,-1,1,1)"), ("mesh shape [3, -1, 1, 1]",)),
    Case("config_sft_batch_zero", lambda t, a: _sft(t, a, None, "--config.sft.batch_size=0"),
         ("sft.batch_size must be >= 1, got 0",)),
    Case("config_shard_size_zero", lambda t, a: _profile(t, a, None, "--config.shard_size=0"),
         ("shard_size must be >= 1, got 0",)),
    # -- model and tokenizer folders ---------------------------------------------------------
    Case("model_missing_folder", lambda t, a: _profile(t, a, None, model=t / "nope"),
         ("{tmp}/nope: model folder not found",)),
    Case("model_no_config", lambda t, a: _profile(t, a, None, model=_model(
        t, a, lambda f: (f / "config.json").unlink())),
         ("{tmp}/model: missing file config.json",)),
    Case("model_config_not_json", lambda t, a: _profile(t, a, None, model=_model(
        t, a, lambda f: (f / "config.json").write_text("{nope"))),
         ("{tmp}/model/config.json: not a readable JSON file",)),
    Case("model_config_bad_field", lambda t, a: _profile(t, a, None, model=_model(
        t, a, lambda f: (f / "config.json").write_text(json.dumps(
            {**json.loads((f / "config.json").read_text()), "hidden_size": "wide"})))),
         ("model config field 'hidden_size'", "{tmp}/model/config.json")),
    Case("model_only_pickle_weights", lambda t, a: _profile(t, a, None, model=_model(
        t, a, lambda f: (next(f.glob("*.safetensors")).rename(f / "pytorch_model.bin"),
                         (f / "model.safetensors.index.json").unlink()))),
         ("{tmp}/model: no *.safetensors weights", "pickle-based weights are never loaded")),
    Case("model_truncated_safetensors", lambda t, a: _profile(t, a, None, model=_model(
        t, a, lambda f: (p := next(f.glob("*.safetensors"))).write_bytes(p.read_bytes()[:200]))),
         ("{tmp}/model/model-00001-of-00001.safetensors: damaged safetensors file",)),
    Case("model_integer_weights", lambda t, a: _profile(t, a, None, model=_model(
        t, a, lambda f: _rewrite_weights(f, lambda ts: ts.update(
            {"model.norm.weight": ts["model.norm.weight"].astype(np.int32)})))),
         ("model-00001-of-00001.safetensors: model.norm.weight: dtype I32",)),
    Case("model_wrong_shape", lambda t, a: _train(t, a, None, model=_model(
        t, a, lambda f: _rewrite_weights(f, lambda ts: ts.update(
            {"model.norm.weight": ts["model.norm.weight"][:10]})))),
         ("tensor model.norm.weight", "has shape (10,)")),
    Case("model_missing_tensor", lambda t, a: _train(t, a, None, model=_model(
        t, a, lambda f: _rewrite_weights(f, lambda ts: ts.pop("model.norm.weight")))),
         ("missing tensor model.norm.weight",)),
    Case("tokenizer_missing", lambda t, a: _profile(t, a, None, model=_model(
        t, a, lambda f: [p.unlink() for p in f.glob("tokenizer*")])),
         ("{tmp}/model: cannot load a tokenizer: none of tokenizer.json",)),
    Case("tokenizer_damaged", lambda t, a: _profile(t, a, None, model=_model(
        t, a, lambda f: (f / "tokenizer.json").write_text("{\"model\": 3}"))),
         ("{tmp}/model: cannot load a tokenizer",)),
    Case("extract_tokenizer_folder_missing", lambda t, a: _extract(
        t, a, [_traj()], "--tokenizer", str(t / "tok")),
         ("{tmp}/tok: tokenizer folder not found",)),
    # -- verifier cases (pivotrl verify) -----------------------------------------------------
    Case("case_bad_json", lambda t, a: _verify(t, [GOOD_CASE, "{nope"]),
         ("{tmp}/cases.jsonl:2: not valid JSON",)),
    Case("case_no_expected_action", lambda t, a: _verify(t, [{"response": "x"}]),
         ("{tmp}/cases.jsonl:1: expected_action: missing",)),
    Case("case_response_a_number", lambda t, a: _verify(t, [{**GOOD_CASE, "response": 3}]),
         ("{tmp}/cases.jsonl:1: response",)),
    Case("case_bad_verifier_spec", lambda t, a: _verify(t, [{**GOOD_CASE, "verifier": 3}]),
         ("{tmp}/cases.jsonl:1: verifier",)),
    Case("case_unknown_verifier", lambda t, a: _verify(t, [{**GOOD_CASE, "verifier": "nope"}]),
         ("{tmp}/cases.jsonl:1: verifier",)),
    Case("case_tools_not_list", lambda t, a: _verify(t, [{**GOOD_CASE, "tools": {"a": 1}}]),
         ("{tmp}/cases.jsonl:1: tools: expected a list",)),
    Case("verify_params_not_json", lambda t, a: _verify(t, [GOOD_CASE], "--verifier_params={x"),
         ("--verifier_params is not JSON",)),
    Case("verify_param_without_value", lambda t, a: _verify(t, [GOOD_CASE], "--param=mode"),
         ("--param 'mode': expected key=value",)),
    Case("verify_unknown_verifier_flag", lambda t, a: _verify(t, [GOOD_CASE], "--verifier=nope"),
         ("unknown verifier 'nope'",)),
    # -- the command line ----------------------------------------------------------------------
    Case("cli_unknown_command", lambda t, a: ["tranin"], ("unknown command 'tranin'",)),
    Case("cli_unknown_flag", lambda t, a: [*_profile(t, a), "--bogus=1"], ("bogus",)),
    Case("cli_missing_required_flag", lambda t, a: ["export", "--run", str(t)],
         ("--output",)),
    Case("cli_bad_enum", lambda t, a: [*_profile(t, a), "--on_error=maybe"], ("on_error",)),
    Case("cli_unexpected_argument", lambda t, a: [*_profile(t, a), "extra"],
         ("unexpected arguments ['extra']",)),
    Case("cli_process_index_out_of_range", lambda t, a: [
        *_profile(t, a), "--process_index=3", "--process_count=2"],
         ("--process_index 3 is not in [0, --process_count 2)",)),
    Case("cli_bad_integer", lambda t, a: ["export", "--run", str(t), "--output", "o",
                                          "--step=abc"], ("step",)),
    Case("cli_no_command", lambda t, a: [], ("usage: pivotrl <command>",)),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_exits_2_naming_the_place(case, assets, tmp_path, capsys):
    import pivotrl_with_test_verifier  # noqa: F401  (the candidates name test_parity)

    argv = case.build(tmp_path, assets)
    code = cli.main(argv)
    out = capsys.readouterr()
    message = out.err + out.out
    assert code == 2, message[-2000:]
    assert "Traceback" not in message
    for want in case.expect:
        assert want.format(tmp=tmp_path) in message, message[-2000:]


def test_at_least_forty_cases():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


def test_skip_counts_bad_rows_and_records(assets, tmp_path, capsys):
    """`--on_error=skip`: extract, profile and verify leave bad inputs out and count them."""
    import pivotrl_with_test_verifier  # noqa: F401

    rows = [_traj(id="a"), "{oops", _traj(id="b", messages=[{"role": "robot", "content": "x"}])]
    argv = _extract(tmp_path, assets, rows, "--on_error=skip")
    assert cli.main(argv) == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["skipped_rows"] == {"bad_json": 1, "unknown_role": 1}
    assert manifest["candidates"] == 2

    cands = _cands(tmp_path, assets, (1, lambda r: {**r, "prompt_ids": [9999]}))
    argv = _profile(tmp_path, assets, cands, "--on_error=skip", "--config.profile.k=2",
                    "--config.profile.candidates_per_call=16")  # fmt: skip
    assert cli.main(argv) == 0
    summary = json.loads((tmp_path / "o" / "summary-p00000-of-00001.json").read_text())
    assert summary["skipped_candidates"] == {"bad_record": 1}
    assert summary["candidates"] == 47
    assert "skipped: " in capsys.readouterr().err

    argv = _verify(tmp_path, [GOOD_CASE, "{nope", {"response": "x"}], "--on_error=skip")
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().err)
    assert summary["written"] == 1 and summary["skipped"] == 2
