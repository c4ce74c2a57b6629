"""JAX's persistent compilation cache, for jobs that compile the same programs many times.

A benchmark that trains several runs of one shape (seeds, methods) in one process builds a new
jitted step per run; with the cache on, every run after the first loads the compiled
executables from `path` instead of compiling them again (CPU and GPU backends).

The cache is process-wide JAX state, so `enabled` restores the previous settings when the job
returns: a job called from a library or a test leaves nothing behind that would make later,
unrelated programs write into its folder.

>>> with enabled("runs/demo/.jax_cache"):  # doctest: +SKIP
...     run_the_job()
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import jax
from jax._src import compilation_cache as _jax_cache

_OPTIONS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


def _set(values: dict) -> None:
    for name, value in values.items():
        jax.config.update(name, value)
    # JAX opens the cache folder once, at the first compile after a reset; without this a
    # changed folder would take effect only in a new process.
    _jax_cache.reset_cache()


@contextlib.contextmanager
def enabled(path: str | os.PathLike) -> Iterator[None]:
    """Cache every compiled program under `path` (created if missing) inside the block."""
    os.makedirs(path, exist_ok=True)
    previous = {name: getattr(jax.config, name) for name in _OPTIONS}
    _set(dict(zip(_OPTIONS, (str(path), 0.0, 0), strict=True)))
    try:
        yield
    finally:
        _set(previous)
