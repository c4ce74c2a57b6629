"""ArrayRecord shard I/O: round trip, shard naming, atomic commit and abort."""

import os

import numpy as np
import pytest
from array_record.python import array_record_module

from pivotrl_jax.data import records
from pivotrl_jax.errors import InputError


def _recs(n):
    return [
        {"schema_version": 1, "id": f"t{i}:0", "text": "é" * (i % 3), "xs": [i, i + 1]}
        for i in range(n)
    ]


def test_round_trip_and_shard_layout(tmp_path):
    paths = records.write_records(tmp_path, _recs(25), shard_size=10, prefix="candidates")
    assert [p.name for p in paths] == [
        "candidates-00000-of-00003.array_record",
        "candidates-00001-of-00003.array_record",
        "candidates-00002-of-00003.array_record",
    ]
    assert list(records.read_records(tmp_path, "candidates")) == _recs(25)
    assert records.count_records(tmp_path, "candidates") == 25
    # Each shard holds exactly shard_size records (the last one the rest), in order.
    sizes = [array_record_module.ArrayRecordReader(str(p)).num_records() for p in paths]
    assert sizes == [10, 10, 5]
    assert sorted(os.listdir(tmp_path)) == [p.name for p in paths]  # no temporary files left


def test_rewrite_removes_stale_shards_of_same_prefix_only(tmp_path):
    records.write_records(tmp_path, _recs(30), shard_size=10, prefix="a")
    records.write_records(tmp_path, _recs(4), shard_size=10, prefix="b")
    records.write_records(tmp_path, _recs(12), shard_size=10, prefix="a")
    assert records.shard_paths(tmp_path, "a") == [
        str(tmp_path / "a-00000-of-00002.array_record"),
        str(tmp_path / "a-00001-of-00002.array_record"),
    ]
    assert list(records.read_records(tmp_path, "a")) == _recs(12)
    assert list(records.read_records(tmp_path, "b")) == _recs(4)


def test_failure_mid_write_leaves_nothing(tmp_path):
    def boom():
        yield from _recs(15)
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        records.write_records(tmp_path, boom(), shard_size=10)
    assert os.listdir(tmp_path) == []


def test_incomplete_shard_set_is_refused(tmp_path):
    paths = records.write_records(tmp_path, _recs(25), shard_size=10)
    os.unlink(paths[1])
    with pytest.raises(InputError, match="incomplete"):
        list(records.read_records(tmp_path))


def test_token_ids_are_packed_and_read_back_equal(tmp_path):
    rec = {"id": "t:0", "prompt_ids": [5, 0, 1023, 7], "completion_ids": [], "note": "x"}
    raw = records.encode(rec)
    assert raw.startswith(records.MAGIC)
    n = int.from_bytes(raw[4:8], "little")
    assert raw[8 + n :] == np.array([5, 0, 1023, 7], "<i4").tobytes()  # 4 ids, then 0 ids
    assert records.decode(raw) == rec
    as_arrays = records.decode(raw, arrays="numpy")
    assert as_arrays["prompt_ids"].dtype == np.int32 and as_arrays["prompt_ids"].tolist() == [
        5,
        0,
        1023,
        7,
    ]
    # Values that are not int32 token ids stay JSON.
    odd = {"id": "t:1", "prompt_ids": [2**40], "completion_ids": None}
    assert (
        not records.encode(odd).startswith(records.MAGIC)
        and records.decode(records.encode(odd)) == odd
    )
    records.write_records(tmp_path, [rec, odd])
    assert list(records.read_records(tmp_path)) == [rec, odd]
