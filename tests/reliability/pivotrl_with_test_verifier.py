"""`pivotrl` with one extra verifier registered, for crash tests that need mixed rewards.

    python tests/reliability/pivotrl_with_test_verifier.py train --config=... --output=...

`test_parity` scores an assistant message of even length 1 and anything else 0, so a random
tiny model gets groups with reward variance and GRPO updates its weights. With
`RELIABILITY_VERIFIER_FAULT=misbehave` it instead hangs (a busy loop) on answers whose length is
1 mod 4 and raises on those of length 3 mod 4, which the verifier runner must cut off or count,
never pass on.
"""

import dataclasses
import os
import sys

from pivotrl_jax.rewards.base import VERIFIERS, result


@dataclasses.dataclass(frozen=True)
class Parity:
    def verify(self, state, expected, action):
        n = len(action.text) if action.kind == "message" else 1
        if os.environ.get("RELIABILITY_VERIFIER_FAULT") == "misbehave":
            while n % 4 == 1:
                pass
            if n % 4 == 3:
                raise RuntimeError("verifier bug")
        return result(float(n % 2 == 0), "parity")


if "test_parity" not in VERIFIERS:
    VERIFIERS.register("test_parity", Parity)

if __name__ == "__main__":
    from pivotrl_jax import cli

    sys.exit(cli.main(sys.argv[1:]))
