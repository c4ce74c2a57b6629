"""Shared fixtures: transformers reference models for the tiny configs, built once per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from pivotrl_jax.models.testing import TINY_CONFIGS, build_reference


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """reference(name) -> (HF folder, transformers model) for TINY_CONFIGS[name]."""
    built = {}

    def get(name: str):
        if name not in built:
            folder = tmp_path_factory.mktemp(name)
            built[name] = (folder, build_reference(TINY_CONFIGS[name], folder, seed=len(built)))
        return built[name]

    return get
