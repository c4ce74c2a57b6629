"""`pivotrl show`: records printed readably."""

from pivotrl_jax import cli
from pivotrl_jax.data import records


def test_show_candidates_with_tokens(sft_file, tiny_tokenizer_dir, tmp_path, capsys):
    out = str(tmp_path / "c")
    assert (
        cli.main(
            ["extract", "--input", sft_file, "--output", out, "--tokenizer", tiny_tokenizer_dir]
        )
        == 0
    )
    capsys.readouterr()
    assert cli.main(["show", "--dir", out, "--n", "3", "--tail", "2"]) == 0
    text = capsys.readouterr().out
    blocks = text.split("── ")
    assert blocks[0] == "== candidates ==\n"
    assert len(blocks) == 4  # three records
    w2 = blocks[3].splitlines()
    assert w2[0].startswith(
        "w1:2  [tool_call]  domain=weather  verifier=tool_call  (7 messages before;"
    )
    assert w2[1:4] == [
        "   ... (5 earlier messages)",
        "   assistant: Paris: 3 degrees. Oslo timed out.",
        "   user: Try Oslo again.",
    ]
    assert w2[4] == ' → assistant: Retrying.  get_weather({"city": "Oslo"})'
    rec = next(r for r in records.read_records(out, "candidates") if r["id"] == "w1:2")
    n_prompt, n_completion = len(rec["prompt_ids"]), len(rec["completion_ids"])
    # No reasoning anywhere in w1, so every turn is token-exact.
    assert w2[5] == f"   tokens: prompt {n_prompt}, completion {n_completion}, token_exact=True"


def test_show_profiled_pivots_and_pivot_rows(sft_file, tmp_path, capsys):
    rec = {
        "schema_version": 1,
        "id": "t:0",
        "kind": "message",
        "domain": "d",
        "verifier": "v",
        "messages": [{"role": "tool", "tool_call_id": "a", "content": "x" * 500}],
        "expected_action": {"role": "assistant", "content": "done", "reasoning_content": "ok"},
        "profile": {"rewards": [1.0, 0.0], "mean": 0.5, "variance": 0.25},
        "split": "validation",
    }
    records.write_records(tmp_path / "p", [rec], prefix="pivots-validation")
    assert cli.main(["show", "--dir", str(tmp_path / "p"), "--width", "40"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "== pivots-validation =="
    assert lines[2] == "   tool[a]: " + "x" * 37 + "..."
    assert lines[3:6] == [
        " → assistant: <think>ok</think>  done",
        "   profile: mean=0.5 variance=0.25 rewards=[1.0, 0.0]",
        "   split: validation",
    ]
    rows = str(tmp_path / "rows")
    assert cli.main(["extract", "--input", sft_file, "--output", rows, "--format=pivot-rows"]) == 0
    capsys.readouterr()
    assert cli.main(["show", "--dir", rows, "--n", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "== pivot_rows =="
    assert (
        lines[-1] == ' → assistant: get_weather({"city": "Paris"})  get_weather({"city": "Oslo"})'
    )
    assert cli.main(["show", "--dir", str(tmp_path / "nothing")]) == 2
