"""Property: random JSON (and random bytes) fed to every reader of user data gives either a
value or an InputError that names the file and line (or record), never another exception.

Readers: trajectory / pivot-row files (data.readers), verifier cases (rewards.cases), record
shards (data.records), the record checks of profile / train / sft (data.record_checks), and the
profiling journal's recovery.
"""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pivotrl_jax.data import readers, record_checks
from pivotrl_jax.data import records as records_io
from pivotrl_jax.errors import InputError
from pivotrl_jax.pivots.journal import Journal
from pivotrl_jax.rewards.cases import parse_case

text = st.text(max_size=8)
numbers = st.integers(-(2**40), 2**40) | st.floats(allow_nan=False)
scalars = st.none() | st.booleans() | numbers | text
json_value = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
# Objects that look like the real thing often enough to get past the first checks.
keys = st.sampled_from(
    ["messages", "tools", "id", "role", "content", "tool_calls", "tool_call_id", "function",
     "name", "arguments", "type", "responses_create_params", "input", "expected_action",
     "call_id", "output", "response", "verifier", "params", "env", "prompt_ids",
     "completion_ids", "completion_mask"]
)  # fmt: skip
shaped = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys | text, inner, max_size=5),
    max_leaves=20,
)
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _line(value) -> str:
    return json.dumps(value, allow_nan=True)


@SETTINGS
@given(rows=st.lists(shaped | json_value, min_size=1, max_size=6))
def test_trajectory_and_pivot_row_readers(tmp_path, rows):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(_line(r) + "\n" for r in rows))
    try:
        items = list(readers.read_inputs([path]))
        assert len(items) <= len(rows)
    except InputError as e:
        assert e.path == str(path) and 1 <= e.line <= len(rows)
    report = readers.ReadReport()
    items = list(readers.read_inputs([path], on_error="skip", report=report))
    assert report.rows == len(rows)
    assert len(items) + sum(report.skipped.values()) == len(rows)


@SETTINGS
@given(data=st.binary(max_size=200))
def test_raw_bytes_as_a_jsonl_file(tmp_path, data):
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(data)
    report = readers.ReadReport()
    list(readers.read_inputs([path], on_error="skip", report=report, max_line_bytes=64))
    try:
        list(readers.read_inputs([path], max_line_bytes=64))
    except InputError as e:
        assert e.path == str(path) and e.line >= 1


@SETTINGS
@given(row=shaped | json_value)
def test_verifier_cases(row):
    try:
        case = parse_case(row, "cases.jsonl", 7)
    except InputError as e:
        assert (e.path, e.line) == ("cases.jsonl", 7)
    else:
        assert case.expected.error is None


@SETTINGS
@given(record=shaped | json_value)
def test_record_checks(record):
    checks = [
        record_checks.prompt_record_check(vocab_size=300),
        record_checks.prompt_record_check(vocab_size=None, need_action=False),
        record_checks.sft_record_check(vocab_size=300),
    ]
    for check in checks:
        try:
            if not isinstance(record, dict):
                raise InputError("not an object", path="s", line=3)
            check(record, "s", 2)
        except InputError as e:
            assert (e.path, e.line) == ("s", 3)


@SETTINGS
@given(raw=st.binary(max_size=64) | json_value.map(lambda v: _line(v).encode()))
def test_record_bytes(raw):
    try:
        record = records_io.decode_at(raw, "shard.array_record", 4)
    except InputError as e:
        assert (e.path, e.line) == ("shard.array_record", 5)
    else:
        assert isinstance(record, dict)


@SETTINGS
@given(data=st.binary(max_size=300), lines=st.lists(json_value, max_size=4))
def test_journal_recovers_from_any_bytes(tmp_path, data, lines):
    path = tmp_path / "journal.jsonl"
    good = [{"unit": i, "payload": v} for i, v in enumerate(lines)]
    path.write_bytes(b"".join(json.dumps(g).encode() + b"\n" for g in good) + data)
    with Journal(path) as j:
        assert set(range(len(good))) <= set(j.done)
        for i, g in enumerate(good):
            assert j.read(i) == g["payload"]
        j.append(99, "after")
    with Journal(path) as j:
        assert j.read(99) == "after"
