"""Settings shared by every test process.

The pytest process, its xdist workers and the subprocesses tests start (CLI commands, 8-device
meshes) share one JAX persistent compilation cache, so a program that many tests compile (the
tiny models' steps, the commands tests run end to end) compiles once per suite run. The folder
is `.pytest_cache/jax-compile` (git-ignored, outside pytest's temporary folders, which some tests
inspect); `PIVOTRL_TEST_JAX_CACHE=0` turns it off and any other value names another folder. A
test that sets its own `JAX_COMPILATION_CACHE_DIR` for a subprocess keeps it.
"""

import os
from pathlib import Path

import pytest

_setting = os.environ.get("PIVOTRL_TEST_JAX_CACHE", "")
if _setting != "0":
    _folder = _setting or str(Path(__file__).resolve().parents[1] / ".pytest_cache/jax-compile")
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _folder)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


@pytest.fixture(scope="session")
def word_kind_questions() -> set[str]:
    """Every question the out-of-domain kinds count_letter, reverse_word and sort_letters can
    ask, enumerated from the word list (not from the generators)."""
    from pivotrl_jax.envs.ood import WORDS

    out = set()
    for w in WORDS:
        out |= {f"Reverse the word {w}.", f"Write {w} backwards."}
        out.add(f"Write the letters of {w} in alphabetical order.")
        for letter in set(w) | {"e", "a"}:
            out.add(f"How many times does the letter {letter} appear in {w}?")
    return out
