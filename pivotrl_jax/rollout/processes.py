"""Rollouts when each of several JAX processes holds its own slice of a batch's prompts.

    generate_slice(engine_name, engine, prompts, params, n) -> completions of this process's
        prompts, equal to those one process generating the whole batch (every process's
        slice, concatenated in process order) would get for them

One function per engine kind:
  jax     the in-process engine runs one program over the whole mesh (SPMD): every process
          passes the whole batch (the slices gathered) and keeps its own prompts' completions
          (the engine returns them replicated on every process).
  sglang  each process sends only its own prompts to the servers (or to the router in front of
          them); `SamplingParams.prompt_offset` gives each prompt the seed of its place in the
          whole batch.
With one process both are `engine.generate(prompts, params, n)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from pivotrl_jax import distributed
from pivotrl_jax.registry import Registry
from pivotrl_jax.rollout.base import Completion, SamplingParams

SliceRollout = Callable[[Any, list[list[int]], SamplingParams, int], list[list[Completion]]]
SLICE_ROLLOUTS: Registry[SliceRollout] = Registry("multi-process rollout")


def _offsets(prompts: list[list[int]]) -> tuple[list[list[list[int]]], int]:
    """(every process's prompts, the index of this process's first prompt in the batch)."""
    slices = distributed.allgather_json(prompts)
    return slices, sum(len(s) for s in slices[: distributed.process_index()])


@SLICE_ROLLOUTS.register("jax")
def _whole_batch(engine, prompts, params, n):
    slices, first = _offsets(prompts)
    if len(slices) == 1:
        return engine.generate(prompts, params, n)
    groups = engine.generate([p for s in slices for p in s], params, n)
    return groups[first : first + len(prompts)]


@SLICE_ROLLOUTS.register("sglang")
def _own_prompts(engine, prompts, params, n):
    _, first = _offsets(prompts)
    return engine.generate(prompts, dataclasses.replace(params, prompt_offset=first), n)


def generate_slice(
    engine_name: str,
    engine: Any,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams,
    n: int,
) -> list[list[Completion]]:
    """`n` completions per prompt of this process, as in one process's run of the whole batch."""
    return SLICE_ROLLOUTS.get(engine_name)(engine, [list(map(int, p)) for p in prompts], params, n)
