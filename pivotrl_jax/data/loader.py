"""grain pipelines: record shards -> trainer batches, resumable and sharded by process.

    record indices (of the split) ─> per-epoch permutation (seed, epoch) ─> global batches of
        B·n (n = shard_count) ─> this shard's B rows [shard_index·B, (shard_index+1)·B) of each
        ─grain.MapDataset.range(batches).repeat().map─> read those B records, decode, pad ─>
        {"prompt_ids": [B, T], "prompt_mask": [B, T], "prompt_lengths": [B], "records": B dicts}

Prompts are left-padded to a fixed T (`max_prompt_len`) so a jitted step sees one shape.
Sharding cuts every global batch into one contiguous slice per process: processes read
disjoint records, and their batches, concatenated in process order, are the batches one
process with `batch_size` B·n reads (so n processes train on what one process would). The
train/validation split hashes the source trajectory id (never the row), so all turns of one
trajectory land on one side.
Iterators are `grain` dataset iterators: `get_state()` after k batches and `set_state()` on
a fresh iterator give the same next batches.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import numpy as np

from pivotrl_jax.data import records
from pivotrl_jax.data.record_checks import RecordCheck
from pivotrl_jax.data.turns import unit_hash

SPLITS = ("train", "validation")


@dataclasses.dataclass(frozen=True)
class LoaderConfig:
    batch_size: int  # B, rows per batch on this process
    max_prompt_len: int  # T
    pad_id: int
    seed: int = 0
    shuffle: bool = True
    num_epochs: int | None = None  # None repeats forever
    split: str | None = None  # "train" | "validation" | None (every record)
    val_fraction: float = 0.0
    split_seed: int = 0
    drop_remainder: bool = True
    # Hold the records in memory (read once, sequentially) when the shard files total at
    # most this many bytes; random reads from disk cost more than decoding a record.
    cache_max_file_bytes: int = 256 << 20

    def __post_init__(self):
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None, got {self.split!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.batch_size < 1 or self.max_prompt_len < 1:
            raise ValueError("batch_size and max_prompt_len must be >= 1")


def split_of(trajectory_id: str, val_fraction: float, seed: int = 0) -> str:
    """`validation` for a `val_fraction` share of trajectories (by hash), else `train`."""
    return "validation" if unit_hash(seed, "split", trajectory_id) < val_fraction else "train"


def pad_left(ids: Sequence[int], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """`ids` left-padded to `length`: ([T] int32 ids, [T] bool mask)."""
    n = len(ids)
    out = np.full((length,), pad_id, np.int32)
    mask = np.zeros((length,), np.bool_)
    if n:
        out[length - n :] = ids
        mask[length - n :] = True
    return out, mask


def batch_records(
    rows: Sequence[Mapping[str, Any]], max_prompt_len: int, pad_id: int
) -> dict[str, Any]:
    """B decoded records -> a trainer batch (prompt arrays plus the records themselves, whose
    token-id fields are int32 arrays)."""
    ids = np.full((len(rows), max_prompt_len), pad_id, np.int32)  # [B, T]
    lengths = np.zeros((len(rows),), np.int32)  # [B]
    for b, r in enumerate(rows):
        p = r.get("prompt_ids")
        if p is None:
            raise ValueError(f"record {r.get('id')!r} has no prompt_ids; extract with a tokenizer")
        if len(p) > max_prompt_len:
            raise ValueError(
                f"record {r.get('id')!r} has a {len(p)}-token prompt, over max_prompt_len "
                f"{max_prompt_len}; extract with max_prompt_tokens"
            )
        if len(p):
            ids[b, max_prompt_len - len(p) :] = p
        lengths[b] = len(p)
    mask = np.arange(max_prompt_len)[None, :] >= (max_prompt_len - lengths)[:, None]  # [B, T]
    return {
        "prompt_ids": ids,
        "prompt_mask": mask,
        "prompt_lengths": lengths,
        "records": list(rows),
    }


class ShardReader:
    """Random access to the records of several ArrayRecord files by global index."""

    def __init__(self, paths: Sequence[str | os.PathLike]):
        self._readers = [records.open_shard(p, "readahead_buffer_size:0") for p in paths]
        sizes = [r.num_records() for r in self._readers]
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)  # [files + 1]

    def read_all(self) -> list[bytes]:
        """Every record in order, read sequentially."""
        return [raw for r in self._readers for raw in r.read_all()]

    def __len__(self) -> int:
        return int(self._starts[-1])

    def read(self, indices: np.ndarray) -> list[bytes]:
        """The records at `indices` ([N] int), in that order; one read per file."""
        files = np.searchsorted(self._starts, indices, side="right") - 1  # [N]
        out: list[bytes] = [b""] * len(indices)
        for f in np.unique(files):
            where = np.flatnonzero(files == f)
            positions = (indices[where] - self._starts[f]).tolist()
            for w, raw in zip(where.tolist(), self._readers[f].read(positions)):
                out[w] = raw
        return out


class MemoryRecords:
    """The same interface as `ShardReader`, over records held in memory."""

    def __init__(self, raws: list[bytes]):
        self._raws = raws

    def __len__(self) -> int:
        return len(self._raws)

    def read(self, indices: np.ndarray) -> list[bytes]:
        raws = self._raws
        return [raws[i] for i in indices.tolist()]


def open_records(
    paths: Sequence[str | os.PathLike], cfg: LoaderConfig
) -> ShardReader | MemoryRecords:
    reader = ShardReader(paths)
    if sum(os.path.getsize(p) for p in paths) <= cfg.cache_max_file_bytes:
        return MemoryRecords(reader.read_all())
    return reader


def record_indices(reader: ShardReader | MemoryRecords, cfg: LoaderConfig) -> np.ndarray:
    """Indices of the records in `cfg.split` ([N] int64); all of them when no split is set."""
    everything = np.arange(len(reader), dtype=np.int64)
    if cfg.split is None:
        return everything
    keep = [_record_split(records.decode(raw), cfg) == cfg.split for raw in reader.read(everything)]
    return everything[np.asarray(keep, dtype=bool)]


class _EpochBatches:
    """Batch i of the (infinite) stream -> the record indices this shard reads for it.

    Epoch e visits all records in the order of a permutation seeded by (seed, e); each epoch
    is cut into `len(indices) // (batch_size · shard_count)` global batches (the remainder is
    dropped, or kept as a last short batch when `drop_remainder` is False), and shard k reads
    the k-th of the `shard_count` contiguous, near-equal slices of each.
    """

    def __init__(self, indices: np.ndarray, cfg: LoaderConfig, shard: grain.sharding.ShardOptions):
        self.indices, self.cfg, self.shard = indices, cfg, shard
        self.global_size = cfg.batch_size * shard.shard_count
        full, rest = divmod(len(indices), self.global_size)
        self.per_epoch = full + (0 if cfg.drop_remainder or not rest else 1)
        self._order: tuple[int, np.ndarray] | None = None

    def order(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            if self.cfg.shuffle:
                rng = np.random.default_rng([self.cfg.seed, epoch])
                self._order = (epoch, self.indices[rng.permutation(len(self.indices))])
            else:
                self._order = (epoch, self.indices)
        return self._order[1]

    def __call__(self, i: int) -> np.ndarray:
        epoch, b = divmod(i, self.per_epoch)
        size = self.global_size
        rows = self.order(epoch)[b * size : (b + 1) * size]
        return np.array_split(rows, self.shard.shard_count)[self.shard.shard_index]


def dataset(
    paths: Sequence[str | os.PathLike],
    cfg: LoaderConfig,
    shard: grain.sharding.ShardOptions | None = None,
) -> grain.IterDataset:
    """The batched pipeline over shard files; `shard=None` shards by JAX process.

    grain indexes batches (its iterator state is the next batch index); each batch's record
    indices come from a per-epoch permutation and are read with one call per file (or from
    memory, for shard sets up to `cfg.cache_max_file_bytes`). Per-record grain transforms
    cost more than the 50 us a record may take at 20k records/s.
    """
    if shard is None:
        shard = grain.sharding.ShardByJaxProcess()
    reader = open_records(paths, cfg)
    indices = record_indices(reader, cfg)
    batches = _EpochBatches(indices, cfg, shard)
    if batches.per_epoch == 0:
        raise ValueError(
            f"{len(indices)} records are fewer than one batch of {cfg.batch_size} on each of "
            f"{shard.shard_count} processes"
        )

    def read_batch(i: int, _: Any) -> dict[str, Any]:
        rows = [records.decode(raw, arrays="numpy") for raw in reader.read(batches(i))]
        return batch_records(rows, cfg.max_prompt_len, cfg.pad_id)

    ds = grain.MapDataset.range(batches.per_epoch).repeat(cfg.num_epochs)
    # Read in this thread: on a couple of cores, prefetch threads cost more than they hide.
    read = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
    return ds.map_with_index(read_batch).to_iter_dataset(read_options=read)


def dataset_from_dir(
    in_dir: str | os.PathLike,
    cfg: LoaderConfig,
    prefix: str = "records",
    shard: grain.sharding.ShardOptions | None = None,
    check: RecordCheck | None = None,
) -> grain.IterDataset:
    """`dataset` over the `prefix` shards of `in_dir`; with `check`, every record is read and
    checked first (data.record_checks), so a bad one stops the run before it starts, located."""
    paths = records.shard_paths(in_dir, prefix)
    if not paths:
        raise FileNotFoundError(f"no {prefix}-*{records.SUFFIX} shards in {in_dir}")
    if check is not None:
        for path in paths:
            for i, raw in enumerate(records.read_shard(path)):
                check(records.decode_at(raw, path, i, arrays="numpy"), path, i)
    return dataset(paths, cfg, shard)


def _record_split(r: Mapping[str, Any], cfg: LoaderConfig) -> str:
    """A record's own `split` (written by selection) wins; otherwise hash its trajectory."""
    return r.get("split") or split_of(r["trajectory_id"], cfg.val_fraction, cfg.split_seed)
