"""Multi-process JAX: start-up from the environment, and the few host-side collectives we use.

`PIVOTRL_DISTRIBUTED=1` makes the `pivotrl` command call `jax.distributed.initialize()` before it
touches a device (after `--help`, which never needs one). With no further variables JAX detects
the cluster itself (TPU pods, SLURM); otherwise `PIVOTRL_COORDINATOR` (host:port of process 0),
`PIVOTRL_NUM_PROCESSES` and `PIVOTRL_PROCESS_ID` name it explicitly. `PIVOTRL_CPU_COLLECTIVES=gloo`
enables cross-process collectives on CPU (the tests run two processes on one machine).

One process writes what is shared (resolved configs, metrics, reports, exported weights):
`is_primary()`. Host data of different sizes per process (prompts, rewards) travels as JSON
through `allgather_json`; every process must call a collective the same number of times.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np

_initialized = False


def enabled() -> bool:
    return os.environ.get("PIVOTRL_DISTRIBUTED", "") not in ("", "0")


def initialize_from_env() -> None:
    """Initialise JAX's multi-process runtime once, as the environment describes it."""
    global _initialized
    if _initialized:
        return
    import jax

    if os.environ.get("PIVOTRL_CPU_COLLECTIVES"):
        jax.config.update(
            "jax_cpu_collectives_implementation", os.environ["PIVOTRL_CPU_COLLECTIVES"]
        )
    kwargs = {}
    if os.environ.get("PIVOTRL_COORDINATOR"):
        kwargs = dict(
            coordinator_address=os.environ["PIVOTRL_COORDINATOR"],
            num_processes=int(os.environ["PIVOTRL_NUM_PROCESSES"]),
            process_id=int(os.environ["PIVOTRL_PROCESS_ID"]),
        )
    jax.distributed.initialize(**kwargs)
    _initialized = True


def _running() -> bool:
    """True when JAX's multi-process runtime is up (checked without importing jax)."""
    return "jax" in sys.modules and sys.modules["jax"].distributed.is_initialized()


def process_index() -> int:
    return sys.modules["jax"].process_index() if _running() else 0


def process_count() -> int:
    return sys.modules["jax"].process_count() if _running() else 1


def is_primary() -> bool:
    """Whether this process writes the shared outputs (process 0, or the only process)."""
    return process_index() == 0


def barrier(name: str) -> None:
    """Every process waits here until all have arrived (a no-op with one process)."""
    if process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def allgather_json(obj: Any) -> list[Any]:
    """`obj` (JSON-serialisable) of every process, in process order; `[obj]` with one process."""
    if process_count() == 1:
        return [obj]
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
    lengths = np.asarray(multihost_utils.process_allgather(np.int64(data.size))).reshape(-1)
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[: data.size] = data
    rows = np.asarray(multihost_utils.process_allgather(padded))  # [processes, max bytes]
    return [json.loads(rows[i, : lengths[i]].tobytes()) for i in range(len(lengths))]


def concat_rows(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each [P_k, ...] array of this process, concatenated over processes (in process order)
    into [sum_k P_k, ...]; the arrays themselves with one process."""
    if process_count() == 1:
        return arrays
    rows = allgather_json([a.tolist() for a in arrays])
    return tuple(
        np.concatenate([np.asarray(r[i], a.dtype).reshape(-1, *a.shape[1:]) for r in rows])
        for i, a in enumerate(arrays)
    )
