"""JAX's persistent compilation cache, for jobs that compile the same programs many times.

A benchmark that trains several runs of one shape (seeds, methods) in one process builds a new
jitted step per run; with the cache on, every run after the first loads the compiled
executables from `path` instead of compiling them again (CPU and GPU backends).

>>> enable("runs/demo/.jax_cache")  # doctest: +SKIP
"""

from __future__ import annotations

import os

import jax


def enable(path: str | os.PathLike) -> None:
    """Cache every compiled program under `path` (created if missing), however quick."""
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
