"""Two real JAX processes on this machine form one 4-device mesh through the env-driven start-up."""

import os
import subprocess
import sys
import textwrap

import pytest

from pivotrl_jax.pivots.stats import stable_seed

WORKER = textwrap.dedent(
    """
    import numpy as np
    from pivotrl_jax import distributed
    distributed.initialize_from_env()
    import jax, jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec as P
    mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    pid = jax.process_index()
    local = np.arange(4, dtype=np.float32).reshape(2, 2) + 10 * pid   # this process's 2 rows
    x = jax.make_array_from_process_local_data(NamedSharding(mesh, P("data")), local)
    total = jax.jit(lambda a: jnp.sum(a * a))(x)
    print("RESULT", jax.process_count(), jax.device_count(), float(total), flush=True)
    """
)


@pytest.mark.slow
def test_two_processes_one_mesh(tmp_path):
    port = 20000 + stable_seed(os.getpid(), "port") % 20000
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
            XLA_FLAGS="--xla_force_host_platform_device_count=2",
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    # Global rows: [[0,1],[2,3]] and [[10,11],[12,13]]: sum of squares by hand.
    want = sum(v * v for v in [0, 1, 2, 3, 10, 11, 12, 13])
    for out in outs:
        line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
        _, nproc, ndev, total = line.split()
        assert (int(nproc), int(ndev), float(total)) == (2, 4, want)
