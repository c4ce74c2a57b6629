"""`pivotrl` with one extra verifier registered, for crash tests that need mixed rewards.

    python tests/reliability/pivotrl_with_test_verifier.py train --config=... --output=...

`test_parity` scores an assistant message of even length 1 and anything else 0, so a random
tiny model gets groups with reward variance and GRPO updates its weights. With
`RELIABILITY_VERIFIER_FAULT=hang` or `=raise` it instead hangs (a busy loop) or raises on every
odd-length message, which the verifier runner must cut off or count, never pass on.
"""

import dataclasses
import os
import sys

from pivotrl_jax.rewards.base import VERIFIERS, result


@dataclasses.dataclass(frozen=True)
class Parity:
    def verify(self, state, expected, action):
        even = action.kind == "message" and len(action.text) % 2 == 0
        fault = os.environ.get("RELIABILITY_VERIFIER_FAULT", "")
        if not even and fault == "hang":
            while True:
                pass
        if not even and fault == "raise":
            raise RuntimeError("verifier bug")
        return result(float(even), "parity")


if "test_parity" not in VERIFIERS:
    VERIFIERS.register("test_parity", Parity)

if __name__ == "__main__":
    from pivotrl_jax import cli

    sys.exit(cli.main(sys.argv[1:]))
