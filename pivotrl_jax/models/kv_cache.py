"""The KV cache: an explicit pytree that a jitted sampler carries from step to step.

Slots [0, index) are written; every row shares `index`. A call with T new tokens writes slots
[index, index + T) and attends over all S slots, with empty slots masked by segment id 0, so
prefill (T = prompt length) and decode (T = 1) are the same code path. Rows of different prompt
lengths are left- or right-padded in the prefill; their padding slots carry segment 0 and are
never attended. The caller sizes S: writing past it is an error when `index` is concrete and
silently clamped by `dynamic_update_slice` under jit.

>>> from pivotrl_jax.models.config import ModelConfig
>>> cfg = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
...                   num_attention_heads=4, num_key_value_heads=2, head_dim=8)
>>> cache = KVCache.init(cfg, batch=3, max_length=16)
>>> len(cache.k), cache.k[0].shape, int(cache.index)
(2, (3, 16, 2, 8), 0)
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding

from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.models.sharding import DEFAULT_RULES, ShardingRules, logical_to_spec

Array = jax.Array


@flax.struct.dataclass
class KVCache:
    k: tuple[Array, ...]  # per layer [B, S, K, H]
    v: tuple[Array, ...]  # per layer [B, S, K, H]
    positions: Array  # [B, S] int32 position of the token held in each slot
    segment_ids: Array  # [B, S] int32; 0 = empty slot or padding
    index: Array  # [] int32 next slot to write

    @classmethod
    def init(
        cls, config: ModelConfig, batch: int, max_length: int, dtype: jnp.dtype | None = None
    ) -> KVCache:
        """An empty cache of `max_length` slots, in the compute dtype unless `dtype` is given."""
        dtype = dtype or config.compute_dtype
        shape = (batch, max_length, config.num_key_value_heads, config.head_dim)
        zeros = tuple(jnp.zeros(shape, dtype) for _ in range(config.num_hidden_layers))
        return cls(
            k=zeros,
            v=tuple(jnp.zeros(shape, dtype) for _ in zeros),
            positions=jnp.zeros((batch, max_length), jnp.int32),
            segment_ids=jnp.zeros((batch, max_length), jnp.int32),
            index=jnp.zeros((), jnp.int32),
        )

    @property
    def max_length(self) -> int:
        return self.positions.shape[1]

    def write_tokens(self, positions: Array, segment_ids: Array) -> KVCache:
        """Records the positions and segments of T new tokens ([B, T] each) at `index`.

        The K/V tensors are written by each attention layer; `advance` then moves `index`.
        """
        T = positions.shape[1]
        if not isinstance(self.index, jax.core.Tracer) and int(self.index) + T > self.max_length:
            raise ValueError(
                f"KV cache overflow: {int(self.index)} + {T} tokens > max_length {self.max_length}"
            )
        start = (0, self.index)
        return self.replace(
            positions=jax.lax.dynamic_update_slice(
                self.positions, positions.astype(jnp.int32), start
            ),
            segment_ids=jax.lax.dynamic_update_slice(
                self.segment_ids, segment_ids.astype(jnp.int32), start
            ),
        )

    def advance(self, k: tuple[Array, ...], v: tuple[Array, ...], num_tokens: int) -> KVCache:
        return self.replace(k=tuple(k), v=tuple(v), index=self.index + num_tokens)


def cache_shardings(cache: KVCache, mesh: Mesh, rules: ShardingRules = DEFAULT_RULES) -> KVCache:
    """Rows over the batch axes and KV heads over the tensor axis, like the activations."""
    kv = cache.k[0].shape
    kv_spec = NamedSharding(
        mesh, logical_to_spec(("batch", None, "kv_heads", "head_dim"), kv, mesh, rules)
    )
    row_spec = NamedSharding(
        mesh, logical_to_spec(("batch", None), cache.positions.shape, mesh, rules)
    )
    return KVCache(
        k=tuple(kv_spec for _ in cache.k),
        v=tuple(kv_spec for _ in cache.v),
        positions=row_spec,
        segment_ids=row_spec,
        index=NamedSharding(mesh, jax.sharding.PartitionSpec()),
    )
