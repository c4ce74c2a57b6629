"""HF safetensors <-> our parameters, one tensor at a time.

On-disk names and layouts are transformers' (and SGLang's) for Qwen3 / Qwen3-MoE:

    ours [shape]                        HF [shape] (prefix model.layers.i. on layer tensors)
    embedding [V, D]                    model.embed_tokens.weight [V, D]
    layer i.attn.q_proj [D, N, H]       self_attn.q_proj.weight [N*H, D]
    layer i.attn.{k,v}_proj [D, K, H]   self_attn.{k,v}_proj.weight [K*H, D]
    layer i.attn.o_proj [N, H, D]       self_attn.o_proj.weight [D, N*H]
    layer i.attn.{q,k}_norm [H]         self_attn.{q,k}_norm.weight [H]
    layer i.input_norm [D]              input_layernorm.weight [D]
    layer i.post_attn_norm [D]          post_attention_layernorm.weight [D]
    layer i.mlp.{gate,up}_proj [D, F]   mlp.{gate,up}_proj.weight [F, D]
    layer i.mlp.down_proj [F, D]        mlp.down_proj.weight [D, F]
    MoE layers:
    layer i.mlp.router [D, E]           mlp.gate.weight [E, D]
    layer i.mlp.{gate,up}_proj [E,D,F]  mlp.experts.{e}.{gate,up}_proj.weight [F, D], e < E
    layer i.mlp.down_proj [E, F, D]     mlp.experts.{e}.down_proj.weight [D, F], e < E
    final_norm.scale [D]                model.norm.weight [D]
    lm_head [D, V] (untied only)        lm_head.weight [V, D]

"layer i.x" is row r of our stacked parameter `stacks.s.x` [n, ...], (s, r) the stack and row
of layer i (stacks.py). Import places each layer's tensor on the device, then stacks them;
export writes each row as its layer's tensors.

Import validates every name and shape from the file headers before reading a byte of data, then
places each tensor straight onto its target sharding; the whole model is never on the host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from safetensors import safe_open
from safetensors.numpy import save_file

from pivotrl_jax import distributed
from pivotrl_jax.errors import PivotError
from pivotrl_jax.models.config import ModelConfig, ModelConfigError
from pivotrl_jax.models.sharding import (
    DEFAULT_RULES,
    ShardingRules,
    param_shardings,
    single_device_mesh,
)
from pivotrl_jax.models.stacks import STACKS, layer_kinds, layer_rows
from pivotrl_jax.models.transformer import Transformer

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# Tokenizer and generation files copied alongside the weights when a source folder is given.
AUX_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "generation_config.json",
)
_NP_DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16}
# Names some checkpoints carry that hold no parameter (recomputed buffers).
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


class WeightsError(PivotError, ValueError):
    """A checkpoint whose tensors do not match the config: names the tensor and the file."""


@dataclasses.dataclass(frozen=True)
class TensorMap:
    """One of our parameters and the HF tensor(s) it is stored as."""

    path: tuple[Any, ...]  # our nnx state path
    hf_names: tuple[str, ...]
    hf_shape: tuple[int, ...]  # the shape of each HF tensor
    to_ours: Callable[[list[np.ndarray]], np.ndarray]
    to_hf: Callable[[np.ndarray], list[np.ndarray]]
    row: int | None = None  # a layer tensor: its row of the stacked parameter at `path`


Where = tuple[tuple[Any, ...], int | None]  # (our path, row of a stacked parameter or None)


def _same(name: str, at: Where, shape: tuple[int, ...]) -> TensorMap:
    return TensorMap(at[0], (name,), shape, lambda xs: xs[0], lambda x: [x], at[1])


def _transposed(name: str, at: Where, hf_shape: tuple[int, int]) -> TensorMap:
    return TensorMap(at[0], (name,), hf_shape, lambda xs: xs[0].T, lambda x: [x.T], at[1])


def _heads_in(name: str, at: Where, D: int, heads: int, H: int) -> TensorMap:
    """HF [heads*H, D] <-> ours [D, heads, H] (q, k, v projections)."""
    return TensorMap(
        at[0],
        (name,),
        (heads * H, D),
        lambda xs: xs[0].T.reshape(D, heads, H),
        lambda x: [x.reshape(D, heads * H).T],
        at[1],
    )


def _heads_out(name: str, at: Where, D: int, heads: int, H: int) -> TensorMap:
    """HF [D, N*H] <-> ours [N, H, D] (output projection)."""
    return TensorMap(
        at[0],
        (name,),
        (D, heads * H),
        lambda xs: xs[0].T.reshape(heads, H, D),
        lambda x: [x.reshape(heads * H, D).T],
        at[1],
    )


def _experts(names: tuple[str, ...], at: Where, hf_shape: tuple[int, int]) -> TensorMap:
    """E HF tensors [a, b] <-> ours [E, b, a] (each expert's matrix transposed, then stacked)."""
    return TensorMap(
        at[0],
        names,
        hf_shape,
        lambda xs: np.stack([x.T for x in xs]),
        lambda x: [e.T for e in x],
        at[1],
    )


def tensor_maps(config: ModelConfig) -> list[TensorMap]:
    """The full name/layout table for `config`, in checkpoint order."""
    c = config
    V, D, N, K, H = (
        c.vocab_size,
        c.hidden_size,
        c.num_attention_heads,
        c.num_key_value_heads,
        c.head_dim,
    )
    maps = [_same("model.embed_tokens.weight", (("embedding",), None), (V, D))]
    for i, (s, r) in enumerate(layer_rows(layer_kinds(c))):
        p = f"model.layers.{i}."
        L = lambda *names, s=s, r=r: ((STACKS, s, *names), r)
        maps += [
            _same(p + "input_layernorm.weight", L("input_norm", "scale"), (D,)),
            _heads_in(p + "self_attn.q_proj.weight", L("attn", "q_proj"), D, N, H),
            _heads_in(p + "self_attn.k_proj.weight", L("attn", "k_proj"), D, K, H),
            _heads_in(p + "self_attn.v_proj.weight", L("attn", "v_proj"), D, K, H),
            _heads_out(p + "self_attn.o_proj.weight", L("attn", "o_proj"), D, N, H),
            _same(p + "self_attn.q_norm.weight", L("attn", "q_norm", "scale"), (H,)),
            _same(p + "self_attn.k_norm.weight", L("attn", "k_norm", "scale"), (H,)),
            _same(p + "post_attention_layernorm.weight", L("post_attn_norm", "scale"), (D,)),
        ]
        if c.is_moe_layer(i):
            E, F = c.num_experts, c.moe_intermediate_size
            experts = lambda proj, e=E, p=p: tuple(
                f"{p}mlp.experts.{j}.{proj}.weight" for j in range(e)
            )
            maps += [
                _transposed(p + "mlp.gate.weight", L("mlp", "router"), (E, D)),
                _experts(experts("gate_proj"), L("mlp", "gate_proj"), (F, D)),
                _experts(experts("up_proj"), L("mlp", "up_proj"), (F, D)),
                _experts(experts("down_proj"), L("mlp", "down_proj"), (D, F)),
            ]
        else:
            F = c.intermediate_size
            maps += [
                _transposed(p + "mlp.gate_proj.weight", L("mlp", "gate_proj"), (F, D)),
                _transposed(p + "mlp.up_proj.weight", L("mlp", "up_proj"), (F, D)),
                _transposed(p + "mlp.down_proj.weight", L("mlp", "down_proj"), (D, F)),
            ]
    maps.append(_same("model.norm.weight", (("final_norm", "scale"), None), (D,)))
    if not c.tie_word_embeddings:
        maps.append(_transposed("lm_head.weight", (("lm_head",), None), (V, D)))
    return maps


# ---------------------------------------------------------------------------------------------
# Import.


def read_config(model_dir: str | os.PathLike, **overrides: Any) -> ModelConfig:
    """`config.json` of an HF folder as a ModelConfig. Unless overridden, `param_dtype` follows
    the checkpoint's dtype (float32 or bfloat16; others load as float32) and `dtype` follows
    `param_dtype`."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise WeightsError(f"{path}: no config.json in the model folder")
    with open(path) as f:
        hf = json.load(f)
    stored = hf.get("dtype") or hf.get("torch_dtype")
    overrides.setdefault("param_dtype", stored if stored in _NP_DTYPES else "float32")
    overrides.setdefault("dtype", overrides["param_dtype"])
    try:
        return ModelConfig.from_hf_config(hf, **overrides)
    except ModelConfigError as e:
        raise ModelConfigError(e.field, f"{e.detail} (in {path})") from None


def _weight_files(model_dir: Path) -> dict[str, Path]:
    """Tensor name -> file, from the index if there is one, else from model.safetensors."""
    index = model_dir / INDEX_FILE
    if index.is_file():
        with open(index) as f:
            weight_map = json.load(f).get("weight_map")
        if not isinstance(weight_map, dict):
            raise WeightsError(f"{index}: no 'weight_map' object")
        return {name: model_dir / file for name, file in weight_map.items()}
    single = model_dir / SINGLE_FILE
    if single.is_file():
        with safe_open(single, framework="numpy") as f:
            return dict.fromkeys(f.keys(), single)
    raise WeightsError(f"{model_dir}: neither {SINGLE_FILE} nor {INDEX_FILE}")


def _check(maps: list[TensorMap], files: dict[str, Path], config: ModelConfig) -> None:
    """Every expected tensor present with its shape, no tensor left over; reads headers only."""
    expected = {name for m in maps for name in m.hf_names}
    unexpected = sorted(
        n
        for n in files
        if n not in expected
        and not n.endswith(_IGNORED_SUFFIXES)
        # A tied checkpoint may still carry the (ignored) output head.
        and not (config.tie_word_embeddings and n == "lm_head.weight")
    )
    if unexpected:
        shown = ", ".join(f"{n} (in {files[n]})" for n in unexpected[:5])
        more = f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""
        raise WeightsError(f"unexpected tensor(s) for this config: {shown}{more}")
    for m in maps:
        for name in m.hf_names:
            if name not in files:
                raise WeightsError(
                    f"missing tensor {name}: expected by the config, found in no "
                    f"file of {next(iter(files.values())).parent}"
                )
    by_file: dict[Path, list[tuple[str, tuple[int, ...]]]] = {}
    for m in maps:
        for name in m.hf_names:
            by_file.setdefault(files[name], []).append((name, m.hf_shape))
    for file, wanted in by_file.items():
        if not file.is_file():
            raise WeightsError(f"{file}: listed in the index but missing")
        with safe_open(file, framework="numpy") as f:
            keys = set(f.keys())
            for name, shape in wanted:
                if name not in keys:
                    raise WeightsError(
                        f"missing tensor {name}: the index names {file}, which does not hold it"
                    )
                got = tuple(f.get_slice(name).get_shape())
                if got != shape:
                    raise WeightsError(
                        f"tensor {name} in {file} has shape {got}, the config expects {shape}"
                    )


def load_hf(
    model_dir: str | os.PathLike,
    *,
    mesh: Mesh | None = None,
    rules: ShardingRules = DEFAULT_RULES,
    **overrides: Any,
) -> tuple[Transformer, ModelConfig]:
    """Builds our Transformer from an HF folder (config.json + safetensors, single or sharded),
    each parameter placed on `mesh` (default: the first device) by `rules`."""
    model_dir = Path(model_dir)
    config = read_config(model_dir, **overrides)
    files = _weight_files(model_dir)
    maps = tensor_maps(config)
    _check(maps, files, config)
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0))))
    shardings = dict(
        nnx.to_flat_state(param_shardings(abstract, mesh or single_device_mesh(), rules))
    )
    dtype = _NP_DTYPES[config.param_dtype]
    values: dict[tuple, jax.Array] = {}
    rows: dict[tuple, dict[int, jax.Array]] = {}  # stacked parameter -> its layers' rows
    with contextlib.ExitStack() as stack:
        used = {files[name] for m in maps for name in m.hf_names}
        handles = {f: stack.enter_context(safe_open(f, framework="numpy")) for f in used}
        for m in maps:
            # One parameter on the host at a time (all E experts of a MoE projection together).
            host = m.to_ours([handles[files[name]].get_tensor(name) for name in m.hf_names])
            host = np.ascontiguousarray(host.astype(dtype))
            sharding = shardings[m.path]
            if m.row is not None:
                sharding = NamedSharding(sharding.mesh, PartitionSpec(*sharding.spec[1:]))
            x = jax.make_array_from_callback(host.shape, sharding, lambda idx, h=host: h[idx])
            if m.row is None:
                values[m.path] = x
            else:
                rows.setdefault(m.path, {})[m.row] = x
            del host
    for path in list(rows):
        layers = rows.pop(path)
        values[path] = _stack_rows([layers[r] for r in range(len(layers))], shardings[path])
    flat = nnx.to_flat_state(abstract)
    for path, var in flat:
        if path not in values:
            raise WeightsError(f"no checkpoint tensor maps to parameter {'.'.join(map(str, path))}")
        var.set_value(values[path])
    return nnx.merge(graphdef, nnx.from_flat_state(flat)), config


def _stack_rows(rows: list[jax.Array], sharding: NamedSharding) -> jax.Array:
    """n arrays [...] -> one [n, ...] placed on `sharding`."""
    return jax.jit(jnp.stack, out_shardings=sharding)(rows)


# ---------------------------------------------------------------------------------------------
# Export.


def export_hf(
    model: nnx.Module | nnx.State,
    config: ModelConfig,
    out_dir: str | os.PathLike,
    *,
    max_shard_bytes: int = 5 * 2**30,
    dtype: str | None = None,
    aux_from: str | os.PathLike | None = None,
) -> Path:
    """Writes config.json, `model-0000k-of-0000n.safetensors` shards of at most
    `max_shard_bytes` (one parameter is never split: a larger one gets a shard of its own) and
    model.safetensors.index.json: the folder transformers' `from_pretrained` and SGLang's
    `--model-path` / `update_weights_from_disk` read. Tokenizer files are copied from `aux_from`.
    Each file is written under a temporary name and renamed once complete; the host holds one
    shard at a time. `dtype` (default: the config's param_dtype) is the on-disk dtype.

    With several JAX processes every process must call this: parameters sharded across them are
    gathered one at a time, and only the primary process writes; all return once it has."""
    out = Path(out_dir)
    writer = distributed.is_primary()
    if writer:
        out.mkdir(parents=True, exist_ok=True)
    params = nnx.state(model, nnx.Param) if isinstance(model, nnx.Module) else model
    dtype = dtype or config.param_dtype
    np_dtype = _NP_DTYPES[dtype]
    flat = dict(nnx.to_flat_state(params))
    maps = tensor_maps(config)
    for m in maps:
        if m.path not in flat:
            raise WeightsError(f"parameter {'.'.join(map(str, m.path))} missing from the model")
    shards: list[list[TensorMap]] = [[]]
    size = 0
    for m in maps:
        nbytes = len(m.hf_names) * int(np.prod(m.hf_shape)) * np.dtype(np_dtype).itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(m)
        size += nbytes
    weight_map, total = {}, 0
    for s, members in enumerate(shards):
        file = f"model-{s + 1:05d}-of-{len(shards):05d}.safetensors"
        values = [_row(flat[m.path].get_value(), m.row) for m in members]
        for v in values:
            if v.is_fully_addressable:
                v.copy_to_host_async()  # overlap the device-to-host copies of the whole shard
        arrays = {}
        for m, v in zip(members, values):
            host = _host_value(v).astype(np_dtype)
            for name, t in zip(m.hf_names, m.to_hf(host)):
                arrays[name] = np.ascontiguousarray(t)
                weight_map[name] = file
                total += t.nbytes
        if writer:
            _atomic(out / file, lambda p, a=arrays: save_file(a, p, metadata={"format": "pt"}))
        del arrays, values
    if writer:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        _atomic(out / INDEX_FILE, lambda p: _write_json(p, index))
        # Weights of an earlier export into the same folder would shadow or confuse the index.
        for stale in out.glob("*.safetensors"):
            if stale.name not in set(weight_map.values()):
                stale.unlink()
        hf_config = config.replace(param_dtype=dtype).to_hf_config()
        _atomic(out / "config.json", lambda p: _write_json(p, hf_config))
        if aux_from is not None:
            copy_aux_files(aux_from, out)
    distributed.barrier(f"export_hf {out}")
    return out


@functools.partial(jax.jit, static_argnums=1)
def _take(x: jax.Array, row: int) -> jax.Array:
    return x[row]


def _row(x: jax.Array, row: int | None) -> jax.Array:
    """Row `row` of a stacked parameter, on the device (a collective, like `_host_value`)."""
    return x if row is None else _take(x, row)


def _host_value(x: jax.Array) -> np.ndarray:
    """The whole value of `x` on this host: gathered from every process when its shards live on
    several (a collective: every process calls it for the same arrays in the same order)."""
    if x.is_fully_addressable or x.is_fully_replicated:
        return np.asarray(jax.device_get(x))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def copy_aux_files(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copies the tokenizer / generation files of `src` that exist into `dst`."""
    for name in AUX_FILES:
        if (Path(src) / name).is_file():
            shutil.copyfile(Path(src) / name, Path(dst) / name)


def _write_json(path: str, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(str(tmp))
    os.replace(tmp, path)
