"""The project-native model folder: an orbax checkpoint of the parameters plus config.json.

    DIR/config.json   the HF config dict (`ModelConfig.to_hf_config`), dtype = storage dtype
    DIR/params/       orbax StandardCheckpointer tree: our parameter names and layouts
    DIR/<tokenizer files>, copied through when converting

Restoring reads each array straight onto its target sharding, on any mesh. A params/ tree with
one entry per layer (written before layers were stacked, models/stacks.py) is read per layer,
then stacked. `load_model` reads either this layout or an HF folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pivotrl_jax import atomic
from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.models.sharding import (
    DEFAULT_RULES,
    ShardingRules,
    param_shardings,
    single_device_mesh,
)
from pivotrl_jax.models.stacks import LAYERS, layer_kinds, stack_layers, unstack_layers
from pivotrl_jax.models.transformer import Transformer
from pivotrl_jax.models.weights import copy_aux_files, load_hf, read_config

PARAMS_DIR = "params"


def save_native(
    model: nnx.Module,
    config: ModelConfig,
    out_dir: str | os.PathLike,
    aux_from: str | os.PathLike | None = None,
) -> Path:
    """Writes `out_dir` (which must not hold a params/ checkpoint yet)."""
    out = Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(out / PARAMS_DIR, params)
    checkpointer.wait_until_finished()
    atomic.write_json(out / "config.json", config.to_hf_config())
    if aux_from is not None:
        copy_aux_files(aux_from, out)
    return out


def is_native(model_dir: str | os.PathLike) -> bool:
    return (Path(model_dir) / PARAMS_DIR).is_dir() and (Path(model_dir) / "config.json").is_file()


def load_native(
    model_dir: str | os.PathLike,
    *,
    mesh: Mesh | None = None,
    rules: ShardingRules = DEFAULT_RULES,
    **overrides: Any,
) -> tuple[Transformer, ModelConfig]:
    """Restores a folder written by `save_native`, each array placed on `mesh` by `rules`.

    Arrays are restored in their stored dtype, then cast if `param_dtype` is overridden."""
    model_dir = Path(model_dir).absolute()
    stored = read_config(model_dir)
    config = read_config(model_dir, **overrides)
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Transformer(stored, rngs=nnx.Rngs(0))))
    shardings = param_shardings(abstract, mesh or single_device_mesh(), rules)
    target = nnx.to_pure_dict(
        jax.tree.map(
            lambda v, s: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s),
            abstract,
            shardings,
            is_leaf=lambda x: isinstance(x, nnx.Variable),
        )
    )
    params = _restore(model_dir / PARAMS_DIR, target, layer_kinds(stored))
    nnx.replace_by_pure_dict(abstract, params)
    model = nnx.merge(graphdef, abstract)
    if config != stored:
        model = _with_config(model, config)
    return model, config


def _restore(path: Path, target: dict[str, Any], kinds: list[bool]) -> dict[str, Any]:
    """The params/ tree as `target` (ShapeDtypeStructs with shardings), from either layout."""
    checkpointer = ocp.StandardCheckpointer()
    if LAYERS not in ocp.PyTreeCheckpointHandler().metadata(epath.Path(path)):
        return checkpointer.restore(path, target)

    def row(x: jax.ShapeDtypeStruct, r: int) -> jax.ShapeDtypeStruct:
        sharding = NamedSharding(x.sharding.mesh, PartitionSpec(*x.sharding.spec[1:]))
        return jax.ShapeDtypeStruct(x.shape[1:], x.dtype, sharding=sharding)

    per_layer = checkpointer.restore(path, unstack_layers(target, kinds, take=row))
    shardings = jax.tree.map(lambda x: x.sharding, target)
    return jax.jit(lambda t: stack_layers(t, kinds), out_shardings=shardings)(per_layer)


def _with_config(model: Transformer, config: ModelConfig) -> Transformer:
    """The same parameters under a config that differs in run fields (dtypes, remat, dispatch)."""
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0))))
    old = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    flat = nnx.to_flat_state(abstract)
    for path, var in flat:
        var.set_value(old[path].get_value().astype(var.get_value().dtype))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def load_model(
    model_dir: str | os.PathLike,
    *,
    mesh: Mesh | None = None,
    rules: ShardingRules = DEFAULT_RULES,
    **overrides: Any,
) -> tuple[Transformer, ModelConfig]:
    """A model from either folder layout: native (params/ present) or HF safetensors."""
    load = load_native if is_native(model_dir) else load_hf
    return load(model_dir, mesh=mesh, rules=rules, **overrides)
