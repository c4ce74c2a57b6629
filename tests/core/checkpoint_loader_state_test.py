"""Each process's loader state in a checkpoint: process I of N writes and reads its own file."""

import pytest
from etils import epath

from pivotrl_jax.train.checkpoint import ProcessJsonHandler, ProcessJsonRestore, ProcessJsonSave


def test_round_trip_and_a_process_count_mismatch(tmp_path):
    handler = ProcessJsonHandler()
    state = {"next_index": 7, "epoch": [1, 2]}
    handler.save(epath.Path(tmp_path), ProcessJsonSave(state))
    assert [p.name for p in tmp_path.iterdir()] == ["process_0-of-1.json"]
    assert handler.restore(epath.Path(tmp_path), ProcessJsonRestore()) == state
    # A checkpoint written by two processes does not restore into one.
    (tmp_path / "process_0-of-1.json").rename(tmp_path / "process_0-of-2.json")
    (tmp_path / "process_1-of-2.json").write_text("{}")
    with pytest.raises(ValueError, match=r"process_0-of-1.json is missing.*process_0-of-2.json"):
        handler.restore(epath.Path(tmp_path), ProcessJsonRestore())
