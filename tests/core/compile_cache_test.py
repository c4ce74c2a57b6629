"""The persistent compilation cache is on inside `compile_cache.enabled` and off after it."""

import jax
import jax.numpy as jnp

from pivotrl_jax import compile_cache


def _compile_new_program(scale: float) -> None:
    # A distinct constant gives a distinct program, so each call compiles (and may cache) anew.
    jax.jit(lambda x: jnp.sin(x) * scale + scale)(jnp.arange(3.0)).block_until_ready()


def test_cache_writes_inside_the_block_and_settings_come_back(tmp_path):
    before = jax.config.jax_compilation_cache_dir
    folder = tmp_path / "cache"
    with compile_cache.enabled(folder):
        assert jax.config.jax_compilation_cache_dir == str(folder)
        _compile_new_program(1.25)
        inside = set(folder.iterdir())
    assert inside, "a program compiled inside the block is cached"
    assert jax.config.jax_compilation_cache_dir == before
    _compile_new_program(2.5)
    assert set(folder.iterdir()) == inside, "a program compiled after the block is not"
