"""Rollout engines by name: "sglang" (HTTP client to SGLang servers); "jax" registers itself.

engine = ENGINES.get("sglang")(["http://127.0.0.1:30000"])
"""

from __future__ import annotations

from collections.abc import Callable

from pivotrl_jax.registry import Registry
from pivotrl_jax.rollout.base import RolloutEngine
from pivotrl_jax.rollout.sglang_engine import SglangEngine

ENGINES: Registry[Callable[..., RolloutEngine]] = Registry("rollout engine")

ENGINES.register("sglang", SglangEngine)
