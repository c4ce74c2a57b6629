"""pivotrl-jax: PivotRL post-training of agentic LLMs in JAX/Flax."""

__version__ = "0.1.0"
