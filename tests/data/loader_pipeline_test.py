"""grain loader: batches, exact resume, two simulated processes, split by trajectory."""

import collections

import grain
import numpy as np
import pytest

from pivotrl_jax.data import loader, records

PAD = 0


def _write(tmp_path, n=103, turns=4):
    recs = [
        {
            "schema_version": 1,
            "id": f"t{i // turns}:{i % turns}",
            "trajectory_id": f"t{i // turns}",
            "prompt_ids": list(range(100 + i, 100 + i + 1 + i % 7)),
        }
        for i in range(n)
    ]
    records.write_records(tmp_path, recs, shard_size=25, prefix="pivots")
    return records.shard_paths(tmp_path, "pivots"), recs


def _ids(batch):
    return [r["id"] for r in batch["records"]]


def test_batches_are_left_padded_records(tmp_path):
    paths, recs = _write(tmp_path)
    cfg = loader.LoaderConfig(
        batch_size=8, max_prompt_len=10, pad_id=PAD, shuffle=False, num_epochs=1
    )
    batches = list(loader.dataset(paths, cfg, grain.sharding.ShardOptions(0, 1)))
    assert len(batches) == 103 // 8
    b = batches[1]
    assert b["prompt_ids"].shape == (8, 10) and b["prompt_ids"].dtype == np.int32
    assert _ids(b) == [r["id"] for r in recs[8:16]]
    for row, r in zip(range(8), recs[8:16]):
        p = r["prompt_ids"]
        want = [PAD] * (10 - len(p)) + p
        assert b["prompt_ids"][row].tolist() == want
        assert b["prompt_mask"][row].tolist() == [False] * (10 - len(p)) + [True] * len(p)
        assert b["prompt_lengths"][row] == len(p)


def test_epochs_cover_every_record_once_in_new_orders(tmp_path):
    paths, recs = _write(tmp_path)
    cfg = loader.LoaderConfig(
        batch_size=10, max_prompt_len=10, pad_id=PAD, seed=3, num_epochs=2, drop_remainder=False
    )
    batches = list(loader.dataset(paths, cfg, grain.sharding.ShardOptions(0, 1)))
    assert len(batches) == 2 * 11 and len(batches[10]["records"]) == 3  # 103 = 10 * 10 + 3
    epoch1 = [i for b in batches[:11] for i in _ids(b)]
    epoch2 = [i for b in batches[11:] for i in _ids(b)]
    everything = sorted(r["id"] for r in recs)
    assert sorted(epoch1) == everything == sorted(epoch2)
    assert epoch1 != epoch2 and epoch1 != [r["id"] for r in recs]


@pytest.mark.parametrize("cache_bytes", [0, 1 << 30], ids=["from_disk", "in_memory"])
def test_resume_from_iterator_state_gives_the_same_batches(tmp_path, cache_bytes):
    paths, _ = _write(tmp_path)
    # num_epochs=None: repeats forever.
    cfg = loader.LoaderConfig(
        batch_size=8, max_prompt_len=10, pad_id=PAD, seed=7, cache_max_file_bytes=cache_bytes
    )
    ds = loader.dataset(paths, cfg, grain.sharding.ShardOptions(0, 1))
    it = iter(ds)
    for _ in range(17):  # past the first epoch (12 batches)
        next(it)
    state = it.get_state()
    want = [next(it) for _ in range(9)]
    fresh = iter(loader.dataset(paths, cfg, grain.sharding.ShardOptions(0, 1)))
    fresh.set_state(state)
    got = [next(fresh) for _ in range(9)]
    for a, b in zip(want, got):
        assert _ids(a) == _ids(b)
        np.testing.assert_array_equal(a["prompt_ids"], b["prompt_ids"])
    # An iterator that simply ran on from the start agrees too.
    straight = iter(ds)
    run = [next(straight) for _ in range(26)][17:]
    assert [_ids(b) for b in run] == [_ids(b) for b in want]


@pytest.mark.parametrize("cache_bytes", [0, 1 << 30], ids=["from_disk", "in_memory"])
def test_two_processes_read_disjoint_sets_that_cover_everything(tmp_path, cache_bytes):
    paths, recs = _write(tmp_path, n=100)
    cfg = loader.LoaderConfig(
        batch_size=5,
        max_prompt_len=10,
        pad_id=PAD,
        seed=1,
        num_epochs=1,
        cache_max_file_bytes=cache_bytes,
    )
    seen = []
    for index in range(2):
        shard = grain.sharding.ShardOptions(shard_index=index, shard_count=2)
        seen.append([i for b in loader.dataset(paths, cfg, shard) for i in _ids(b)])
    assert len(seen[0]) == len(seen[1]) == 50
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(r["id"] for r in recs)


def test_split_by_trajectory_never_by_row(tmp_path):
    paths, recs = _write(tmp_path, n=400, turns=4)
    base = dict(
        batch_size=1, max_prompt_len=10, pad_id=PAD, num_epochs=1, val_fraction=0.3, split_seed=5
    )
    sides = {}
    for split in ("train", "validation"):
        cfg = loader.LoaderConfig(split=split, **base)
        sides[split] = [
            i
            for b in loader.dataset(paths, cfg, grain.sharding.ShardOptions(0, 1))
            for i in _ids(b)
        ]
    assert sorted(sides["train"] + sides["validation"]) == sorted(r["id"] for r in recs)
    traj = {s: {i.split(":")[0] for i in ids} for s, ids in sides.items()}
    assert not traj["train"] & traj["validation"]  # no trajectory straddles the split
    per_traj = collections.Counter(i.split(":")[0] for i in sides["validation"])
    assert set(per_traj.values()) == {4}  # all four turns of a held-out trajectory
    assert 0.15 < len(traj["validation"]) / 100 < 0.45
    assert traj["validation"] == {
        f"t{k}" for k in range(100) if loader.split_of(f"t{k}", 0.3, 5) == "validation"
    }


def test_record_split_field_wins_and_errors_name_the_record(tmp_path):
    recs = [
        {"id": "a:0", "trajectory_id": "a", "prompt_ids": [5], "split": "validation"},
        {"id": "b:0", "trajectory_id": "b", "prompt_ids": [6], "split": "train"},
    ]
    records.write_records(tmp_path, recs, prefix="p")
    cfg = loader.LoaderConfig(
        batch_size=1, max_prompt_len=4, pad_id=PAD, num_epochs=1, split="validation"
    )
    assert [
        _ids(b)
        for b in loader.dataset_from_dir(tmp_path, cfg, "p", grain.sharding.ShardOptions(0, 1))
    ] == [["a:0"]]
    records.write_records(
        tmp_path, [{"id": "c:0", "trajectory_id": "c", "prompt_ids": [1] * 9}], prefix="q"
    )
    too_short = loader.LoaderConfig(batch_size=1, max_prompt_len=4, pad_id=PAD)
    with pytest.raises(ValueError, match="'c:0' has a 9-token prompt"):
        next(iter(loader.dataset_from_dir(tmp_path, too_short, "q")))


def test_default_sharding_is_by_jax_process(tmp_path):
    paths, _ = _write(tmp_path)
    cfg = loader.LoaderConfig(batch_size=8, max_prompt_len=10, pad_id=PAD, num_epochs=1)
    by_process = [_ids(b) for b in loader.dataset(paths, cfg)]  # one JAX process here: all of it
    explicit = [_ids(b) for b in loader.dataset(paths, cfg, grain.sharding.ShardOptions(0, 1))]
    assert by_process == explicit and len(by_process) == 12
