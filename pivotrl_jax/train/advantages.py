"""Group-relative advantage estimators: rewards [P, G] -> advantages [P, G].

Row p holds the G rewards sampled for prompt (pivot state) p. Every estimator is a pure
function of the group; `flat_advantages` wraps one for rewards laid out as [B] = [P·G]
(the G samples of a prompt adjacent, the order the rollout produces).

    grpo       A_i = (r_i - mean(r)) / (std(r) + eps)
    dr_grpo    A_i =  r_i - mean(r)                                  (Dr.GRPO, no std)
    rloo       A_i =  r_i - mean_{j != i} r_j = G/(G-1) (r_i - mean(r))
    rloo_std   A_i = (r_i - mean_{j != i} r_j) / (std_{j != i} r_j + eps)  where that std > 0,
               and r_i - mean_{j != i} r_j where it is 0          (the NVIDIA NeMo-RL recipe)

The std's ddof is a parameter. Default ddof=1 (the sample std, torch.std's default): verl's
GRPO (`torch.std`), TRL's GRPO (`.std(dim=1)`) and NeMo-RL (which rescales its population
variance by n/(n-1)) all use it. Pass ddof=0 for the population std (numpy's default,
tunix's `jnp.std`). For G = 2, std_{j != i} has one sample: with ddof=1 it is undefined and
treated as 0 (no normalisation), as in NeMo-RL.

All estimators compute in float32 (or wider) and keep no gradient (stop_gradient).
"""

from __future__ import annotations

from typing import Protocol

import jax
import jax.numpy as jnp

from pivotrl_jax.registry import Registry
from pivotrl_jax.train.aggregation import as_float

Array = jax.Array


class AdvantageEstimator(Protocol):
    def __call__(self, rewards: Array, *, eps: float, ddof: int) -> Array: ...


ADVANTAGES: Registry[AdvantageEstimator] = Registry("advantage estimator")


def _std(x: Array, axis: int, ddof: int) -> Array:
    """std with `ddof`; 0 where there are not more than ddof samples."""
    n = x.shape[axis]
    if n - ddof <= 0:
        return jnp.zeros(x.shape[:axis] + x.shape[axis + 1 :], x.dtype)
    return jnp.std(x, axis=axis, ddof=ddof)


@ADVANTAGES.register("grpo")
def grpo(
    rewards: Array,  # [P, G]
    *,
    eps: float = 1e-6,
    ddof: int = 1,
) -> Array:  # [P, G]
    """A_i = (r_i - mean(r)) / (std(r; ddof) + eps), per group."""
    r = jax.lax.stop_gradient(as_float(rewards))  # float32 (or wider)
    mean = jnp.mean(r, axis=-1, keepdims=True)  # [P, 1]
    std = _std(r, axis=-1, ddof=ddof)[:, None]  # [P, 1]
    return (r - mean) / (std + eps)


@ADVANTAGES.register("dr_grpo")
def dr_grpo(
    rewards: Array,  # [P, G]
    *,
    eps: float = 1e-6,  # unused: no division
    ddof: int = 1,  # unused: no std
) -> Array:  # [P, G]
    """A_i = r_i - mean(r) (Dr.GRPO, arXiv 2503.20783: no std normalisation)."""
    del eps, ddof
    r = jax.lax.stop_gradient(as_float(rewards))  # float32 (or wider)
    return r - jnp.mean(r, axis=-1, keepdims=True)


def leave_one_out_mean(
    rewards: Array,  # [P, G]
) -> Array:  # [P, G]
    """b_i = (sum_j r_j - r_i) / (G - 1)."""
    r = as_float(rewards)
    g = r.shape[-1]
    if g < 2:
        raise ValueError(f"a leave-one-out baseline needs G >= 2, got G = {g}")
    return (jnp.sum(r, axis=-1, keepdims=True) - r) / (g - 1)


def leave_one_out_std(
    rewards: Array,  # [P, G]
    ddof: int = 1,
) -> Array:  # [P, G]
    """s_i = std(r_j : j != i; ddof); 0 where G - 1 <= ddof.

    From the other G-1 rewards' sums: m = G-1, S1 = sum_{j!=i} r_j, S2 = sum_{j!=i} r_j^2,
    var = (S2 - S1^2/m) / (m - ddof). Rewards are centred on the group mean first so the
    subtraction does not cancel catastrophically.
    """
    r = as_float(rewards)
    m = r.shape[-1] - 1
    if m - ddof <= 0:
        return jnp.zeros_like(r)
    c = r - jnp.mean(r, axis=-1, keepdims=True)  # the std is shift-invariant
    s1 = jnp.sum(c, axis=-1, keepdims=True) - c  # [P, G]
    s2 = jnp.sum(c * c, axis=-1, keepdims=True) - c * c  # [P, G]
    var = (s2 - s1 * s1 / m) / (m - ddof)
    return jnp.sqrt(jnp.maximum(var, 0.0))


@ADVANTAGES.register("rloo")
def rloo(
    rewards: Array,  # [P, G]
    *,
    eps: float = 1e-6,  # unused: no division
    ddof: int = 1,  # unused: no std
) -> Array:  # [P, G]
    """A_i = r_i - mean_{j != i} r_j (RLOO, arXiv 2402.14740)."""
    del eps, ddof
    r = jax.lax.stop_gradient(as_float(rewards))  # float32 (or wider)
    return r - leave_one_out_mean(r)


@ADVANTAGES.register("rloo_std")
def rloo_std(
    rewards: Array,  # [P, G]
    *,
    eps: float = 1e-6,
    ddof: int = 1,
) -> Array:  # [P, G]
    """A_i = (r_i - b_i) / (s_i + eps) where s_i > 0, else r_i - b_i.

    b_i and s_i are the mean and std (ddof) of the other G-1 rewards of the group.
    """
    r = jax.lax.stop_gradient(as_float(rewards))  # float32 (or wider)
    centred = r - leave_one_out_mean(r)
    s = leave_one_out_std(r, ddof)
    return jnp.where(s > 0, centred / (s + eps), centred)


def group_advantages(
    name: str,
    rewards: Array,  # [P, G]
    *,
    eps: float = 1e-6,
    ddof: int = 1,
) -> Array:  # [P, G]
    """Look up `name` in ADVANTAGES and apply it."""
    return ADVANTAGES.get(name)(rewards, eps=eps, ddof=ddof)


def flat_advantages(
    name: str,
    rewards: Array,  # [B] with B = P·G, a prompt's G samples adjacent
    group_size: int,
    *,
    eps: float = 1e-6,
    ddof: int = 1,
) -> Array:  # [B]
    """`group_advantages` for rewards laid out flat, [B] -> [P, G] -> [B]."""
    (b,) = rewards.shape
    if b % group_size:
        raise ValueError(f"batch {b} is not a multiple of group_size {group_size}")
    grouped = rewards.reshape(b // group_size, group_size)  # [P, G]
    return group_advantages(name, grouped, eps=eps, ddof=ddof).reshape(b)


def zero_variance_groups(
    rewards: Array,  # [P, G]
) -> tuple[Array, Array]:  # keep [P] bool, num_dropped [] int32
    """Groups whose G rewards are all equal carry no GRPO signal; mark them for dropping.

    Returns `keep` (True for groups with reward variance > 0, compared exactly, not with a
    tolerance) and the number of dropped groups. Shapes stay static under jit: a trainer drops
    a group by zeroing its rows' loss mask, `mask * jnp.repeat(keep, G)[:, None]`, which also
    removes its tokens from the token-mean count (DAPO's dynamic sampling, done online).
    """
    keep = jnp.any(rewards != rewards[:, :1], axis=-1)  # [P]
    return keep, jnp.sum(~keep).astype(jnp.int32)
