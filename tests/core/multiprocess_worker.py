"""One JAX process of a `pivotrl` pipeline run by tests/core/multiprocess_test.py.

    python tests/core/multiprocess_worker.py ROOT COMMANDS_JSON

Runs each command of COMMANDS_JSON (a list of argv lists) through `pivotrl_jax.cli.main` in this
one process (the environment says whether it is one of several, as PIVOTRL_DISTRIBUTED does for
the `pivotrl` command), then prints one `REPORT` line of JSON: each command's exit code, the
files under ROOT this process opened for writing (Python's `open` audit events; orbax's array
files are written in C++ and do not appear), and the pivot ids the trainer drew per iteration.
"""

import dataclasses
import json
import os
import sys
import time

from pivotrl_jax import cli
from pivotrl_jax.rewards.base import VERIFIERS, result
from pivotrl_jax.train import loop


@dataclasses.dataclass(frozen=True)
class EvenLength:
    """Mixed outcomes on a random model: a message of even length scores 1."""

    def verify(self, state, expected, action):
        return result(float(action.kind == "message" and len(action.text) % 2 == 0), "parity")


def main() -> None:
    root, commands = os.path.realpath(sys.argv[1]), json.loads(sys.argv[2])
    VERIFIERS.register("test_even_length", EvenLength)
    written: set[str] = set()

    def audit(event, args):
        if event == "open" and args[0] is not None and not isinstance(args[0], int):
            path = os.path.realpath(os.fsdecode(args[0]))
            mode, flags = args[1] or "", args[2] or 0
            writes = any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR)
            if writes and path.startswith(root + os.sep):
                written.add(os.path.relpath(path, root))

    drawn: list[list[str]] = []
    next_pivots = loop.next_pivots

    def recording_next_pivots(data, excluded, max_batches=1000):
        records = next_pivots(data, excluded, max_batches)
        drawn.append([r["id"] for r in records])
        return records

    loop.next_pivots = recording_next_pivots
    sys.addaudithook(audit)
    codes, seconds = [], []
    for argv in commands:
        start = time.perf_counter()
        codes.append(cli.main(argv))
        seconds.append(round(time.perf_counter() - start, 1))
    report = {"codes": codes, "seconds": seconds, "written": sorted(written), "drawn": drawn}
    print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
