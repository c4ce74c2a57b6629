"""Rollout engines by name: "sglang" (HTTP client to SGLang servers); "jax" (in-process).

engine = ENGINES.get("sglang")(["http://127.0.0.1:30000"])
"""

from __future__ import annotations

from collections.abc import Callable

from pivotrl_jax.registry import Registry
from pivotrl_jax.rollout.base import RolloutEngine
from pivotrl_jax.rollout.jax_engine import JaxEngine
from pivotrl_jax.rollout.sglang_engine import SglangEngine

ENGINES: Registry[Callable[..., RolloutEngine]] = Registry("rollout engine")

ENGINES.register("sglang", SglangEngine)
ENGINES.register("jax", JaxEngine)
