"""Two real JAX processes: the default loader shards by JAX process into disjoint, complete sets."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import grain
import pytest

from pivotrl_jax.data import loader, records
from pivotrl_jax.data.turns import unit_hash

REPO = Path(__file__).resolve().parents[2]
WORKER = textwrap.dedent(
    """
    import json, sys
    from pivotrl_jax import distributed
    distributed.initialize_from_env()
    import jax
    from pivotrl_jax.data import loader
    cfg = loader.LoaderConfig(batch_size=4, max_prompt_len=8, pad_id=0, seed=11, num_epochs=1)
    ds = loader.dataset_from_dir(sys.argv[1], cfg, "pivots")
    ids = [r["id"] for b in ds for r in b["records"]]
    print("IDS", jax.process_index(), jax.process_count(), json.dumps(ids), flush=True)
    """
)


@pytest.mark.slow
def test_shard_by_jax_process_in_two_processes(tmp_path):
    recs = [{"id": f"t{i}:0", "trajectory_id": f"t{i}", "prompt_ids": [1, 2, 3]} for i in range(40)]
    records.write_records(tmp_path, recs, shard_size=16, prefix="pivots")
    port = 20000 + int(unit_hash(os.getpid(), "loader-port") * 20000)
    procs = []
    for pid in range(2):
        env = dict(
            os.environ,
            PIVOTRL_DISTRIBUTED="1",
            PIVOTRL_COORDINATOR=f"127.0.0.1:{port}",
            PIVOTRL_NUM_PROCESSES="2",
            PIVOTRL_PROCESS_ID=str(pid),
            PIVOTRL_CPU_COLLECTIVES="gloo",
            JAX_PLATFORMS="cpu",
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, str(tmp_path)],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    seen = {}
    for out in outs:
        line = next(ln for ln in out.splitlines() if ln.startswith("IDS"))
        _, index, count, ids = line.split(" ", 3)
        assert int(count) == 2
        seen[int(index)] = json.loads(ids)
    assert len(seen[0]) == len(seen[1]) == 20
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(r["id"] for r in recs)
    # The same as simulating the two processes in this one with explicit shard options.
    cfg = loader.LoaderConfig(batch_size=4, max_prompt_len=8, pad_id=0, seed=11, num_epochs=1)
    for index in range(2):
        ds = loader.dataset_from_dir(tmp_path, cfg, "pivots", grain.sharding.ShardOptions(index, 2))
        assert [r["id"] for b in ds for r in b["records"]] == seen[index]
