"""Multi-process JAX start-up from the environment (TPU pods, multi-GPU clusters, SLURM).

`PIVOTRL_DISTRIBUTED=1` makes the `pivotrl` command call `jax.distributed.initialize()` before it
touches a device. With no further variables JAX detects the cluster itself (TPU pods, SLURM);
otherwise `PIVOTRL_COORDINATOR` (host:port of process 0), `PIVOTRL_NUM_PROCESSES` and
`PIVOTRL_PROCESS_ID` name it explicitly. `PIVOTRL_CPU_COLLECTIVES=gloo` enables cross-process
collectives on CPU (used by the tests, which run two processes on one machine).
"""

from __future__ import annotations

import os

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
