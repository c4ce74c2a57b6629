"""Round trips: trajectories -> records, -> pivot rows -> records, and local HF dataset files."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
from data_samples import traj_plain, traj_shell, traj_weather, write_jsonl

from pivotrl_jax import cli
from pivotrl_jax.data import pivot_rows, readers, records
from pivotrl_jax.data.schema import Candidate


def _records(out):
    return list(records.read_records(out, "candidates"))


def test_candidate_record_round_trip(sft_file, tmp_path):
    assert cli.main(["extract", "--input", sft_file, "--output", str(tmp_path / "a")]) == 0
    for r in _records(tmp_path / "a"):
        assert Candidate.from_record(r).to_record() == r


def test_pivot_rows_export_reads_back_identically(sft_file, tmp_path):
    direct, rows_dir, again = tmp_path / "direct", tmp_path / "rows", tmp_path / "again"
    assert cli.main(["extract", "--input", sft_file, "--output", str(direct)]) == 0
    assert (
        cli.main(["extract", "--input", sft_file, "--output", str(rows_dir), "--format=pivot-rows"])
        == 0
    )
    rows_file = rows_dir / "pivot_rows.jsonl"
    assert cli.main(["extract", "--input", str(rows_file), "--output", str(again)]) == 0
    assert _records(again) == _records(direct)
    manifest = json.loads((again / "manifest.json").read_text())
    assert manifest["pivot_rows_read"] == 9 and manifest["trajectories"] == 0

    rows = {r["id"]: r for r in map(json.loads, rows_file.read_text().splitlines())}
    # The public contract: Responses input, flat tools, tool_choice, one action.
    w2 = rows["w1:2"]
    assert w2["responses_create_params"]["tool_choice"] == "auto"
    assert w2["responses_create_params"]["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    assert w2["expected_action"] == {
        "type": "function_call",
        "call_id": "c",
        "name": "get_weather",
        "arguments": '{"city": "Oslo"}',
        "content": "Retrying.",
    }
    assert [i.get("type", i.get("role")) for i in w2["responses_create_params"]["input"]] == [
        "system",
        "user",
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
        "assistant",
        "user",
    ]
    assert rows["w1:0"]["expected_action"]["type"] == "function_call_batch"
    assert [c["arguments"] for c in rows["w1:0"]["expected_action"]["calls"]] == [
        '{"city": "Paris"}',
        '{"city": "Oslo"}',
    ]
    assert rows["w1:3"]["expected_action"] == {"type": "message", "content": "Oslo: -1 degrees."}
    assert rows["s1:1"]["responses_create_params"]["input"][1] == {
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "List them."}],
    }


def test_foreign_pivot_row_without_provenance(tmp_path):
    row = {
        "responses_create_params": {
            "input": [
                {
                    "type": "message",
                    "role": "developer",
                    "content": [{"type": "input_text", "text": "Be terse."}],
                },
                {"role": "user", "content": "Weather in Lima?"},
            ],
            "tools": [
                {"type": "function", "name": "get_weather", "parameters": {}, "strict": False}
            ],
            "tool_choice": "auto",
        },
        "expected_action": {
            "type": "function_call",
            "name": "get_weather",
            "arguments": '{"city": "Lima"}',
        },
        "pass_rate": 0.25,
    }
    path = write_jsonl(tmp_path / "rows.jsonl", [row])
    (c,) = readers.read_inputs([path], context=readers.RowContext("tau", lambda d: f"v_{d}"))
    assert c.id == f"{path}:1:0" and c.trajectory_id == f"{path}:1" and c.turn_index == 0
    assert (c.domain, c.verifier, c.kind) == ("tau", "v_tau", "tool_call")
    assert [(m.role, m.content) for m in c.state] == [
        ("system", "Be terse."),
        ("user", "Weather in Lima?"),
    ]
    assert c.action.tool_calls[0].arguments == {"city": "Lima"}
    assert c.tools == (
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {}, "strict": False},
        },
    )
    assert (
        pivot_rows.candidate_to_row(c)["responses_create_params"]["tools"]
        == row["responses_create_params"]["tools"]
    )


def _rows_to_parquet(path, rows, json_columns):
    table = {
        k: [json.dumps(r.get(k)) if k in json_columns else r.get(k) for r in rows]
        for k in ("id", "domain", "messages", "tools")
    }
    pq.write_table(pa.table(table), path)
    return str(path)


def test_local_hf_dataset_files_give_the_same_candidates(tmp_path):
    rows = [traj_weather(), traj_shell(), dict(traj_plain(), id="p1")]
    jsonl = write_jsonl(tmp_path / "sft.jsonl", rows)
    parquet = _rows_to_parquet(tmp_path / "sft.parquet", rows, json_columns=("messages", "tools"))
    assert cli.main(["extract", "--input", jsonl, "--output", str(tmp_path / "j")]) == 0
    assert cli.main(["extract", "--input", parquet, "--output", str(tmp_path / "p")]) == 0
    # The same JSONL read through `datasets` (Arrow nests the messages; nulls are dropped again).
    assert (
        cli.main(
            ["extract", "--input", jsonl, "--output", str(tmp_path / "h"), "--config.source=hf"]
        )
        == 0
    )
    want = [{k: v for k, v in r.items() if k != "source"} for r in _records(tmp_path / "j")]
    for name in ("p", "h"):
        got = _records(tmp_path / name)
        assert [{k: v for k, v in r.items() if k != "source"} for r in got] == want
    assert [r["source"] for r in _records(tmp_path / "p")][:1] == [f"{parquet}:1"]


def test_hf_rows_locate_errors_by_row(tmp_path):
    rows = [traj_weather(), dict(traj_plain(), id="p1")]
    rows[1]["messages"][0]["role"] = "robot"
    parquet = _rows_to_parquet(tmp_path / "bad.parquet", rows, json_columns=("messages", "tools"))
    report = readers.ReadReport()
    got = list(readers.read_inputs([parquet], on_error="skip", report=report))
    assert [t.id for t in got] == ["w1"]
    (example,) = report.examples
    assert example.startswith(f"{parquet}:2: messages[0].role: unknown role 'robot'")


def test_dataset_folder_written_by_save_to_disk(tmp_path):
    import datasets

    rows = [traj_shell(), dict(traj_plain(), id="p1")]
    folder = tmp_path / "ds"
    table = {"id": [r["id"] for r in rows], "messages": [json.dumps(r["messages"]) for r in rows]}
    datasets.Dataset.from_dict(table).save_to_disk(str(folder))
    jsonl = write_jsonl(
        tmp_path / "same.jsonl", [{"id": r["id"], "messages": r["messages"]} for r in rows]
    )
    assert cli.main(["extract", "--input", str(folder), "--output", str(tmp_path / "d")]) == 0
    assert cli.main(["extract", "--input", jsonl, "--output", str(tmp_path / "j")]) == 0
    strip = lambda rs: [{k: v for k, v in r.items() if k != "source"} for r in rs]
    got = _records(tmp_path / "d")
    assert strip(got) == strip(_records(tmp_path / "j")) and len(got) == 5
    assert got[0]["source"] == f"{folder}:1" and got[-1]["source"] == f"{folder}:2"
