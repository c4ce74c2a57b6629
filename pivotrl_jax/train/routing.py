"""The MoE router's part in the train step: the load-balancing loss and router agreement.

    sum  += coef * L_aux * count      the loss becomes loss + coef * L_aux (L_aux of
                                      moe_routing.load_balancing_loss; 0 in the RL recipe)
    moe/router_agreement = hits / slots over the tokens whose experts were replayed: the
                           fraction of rollout-chosen experts that the trainer's own router
                           also puts in its top-R (1.0 when rollout and trainer agree)

The metrics are sums per micro-batch (merged exactly by `losses.merge_metrics`);
`finish_metrics` turns them into the agreement ratio once the batch is complete.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pivotrl_jax.models.moe_routing import RouterStats, load_balancing_loss, router_agreement
from pivotrl_jax.train.aggregation import LossParts

Array = jax.Array
METRIC_REDUCTIONS = {
    "moe/load_balancing_loss": "token_mean",
    "moe/replayed_hits": "sum",
    "moe/replayed_slots": "sum",
}


def router_terms(
    parts: LossParts,
    stats: RouterStats | None,  # [L, ...] of the MoE layers; None for a dense model
    routed_experts: Array | None,  # [B, T, L, R] replayed experts, -1 where none
    coef: float,
) -> tuple[LossParts, dict[str, Array]]:
    """(parts with coef * L_aux added, router metrics) for one micro-batch."""
    if stats is None:
        return parts, {}
    aux = load_balancing_loss(stats)
    metrics = {"moe/load_balancing_loss": aux}
    if coef:
        parts = LossParts(parts.sum + coef * aux * parts.count, parts.count)
    if routed_experts is not None:
        num_experts = stats.load.shape[-1]
        replayed = jnp.moveaxis(routed_experts, 2, 0)  # [L, B, T, R]
        hits, slots = router_agreement(stats.chosen, replayed, num_experts)
        metrics.update({"moe/replayed_hits": hits, "moe/replayed_slots": slots})
    return parts, metrics


def finish_metrics(metrics: dict[str, Array]) -> dict[str, Array]:
    """Adds moe/router_agreement = hits / slots when the batch replayed any routing."""
    if "moe/replayed_slots" in metrics:
        slots = metrics["moe/replayed_slots"]
        metrics["moe/router_agreement"] = metrics["moe/replayed_hits"] / jnp.maximum(slots, 1.0)
    return metrics
