"""The in-process JAX rollout engine: the policy's own parameters, jitted prefill + decode loop.

    engine = JaxEngine.from_pretrained(model_dir, mesh=mesh)        # or JaxEngine(model, ...)
    groups = engine.generate(prompt_ids, SamplingParams(max_new_tokens=256, seed=0), n=16)
    engine.update_weights(train_state_params, version=step)          # no host copy

What it returns, per prompt and sample (a `Completion`):
  token_ids      the sampled tokens, a stop token included when it ended the completion
  logprobs       log pi_T(a_t | s, a_<t) of each sampled token, pi_T = softmax(logits / T) of the
                 model's float32 logits, UNtruncated: top-k / top-p choose which tokens may be
                 drawn but do not renormalise the reported logprob. At T = 1 this is exactly the
                 model's own log-softmax (what GRPO's ratio needs); greedy (T = 0) reports the
                 temperature-1 log-softmax. This is SGLang's default (`output_token_logprobs`).
  finish_reason  "stop" (a stop id was sampled: one of SamplingParams.stop_token_ids or, unless
                 JaxEngineOptions(stop_at_eos=False), the model config's eos_token_id, as
                 SGLang and transformers do) or "length" (max_new_tokens reached)
  weight_version the version given to the last `update_weights` (or the constructor)

How it runs: all n samples of all P prompts are rows (B = P * n), sorted by prompt length and cut
into chunks of at most `max_batch_size` rows. Each chunk is left-padded to buckets (powers of two
for rows and max_new_tokens, half octaves for prompt length; see `buckets.py`) and runs as one
compiled program (`decode.generate`: one chunked prefill per distinct prompt, its KV cache copied
to that prompt's n rows, then a `lax.while_loop` that exits when every row is done), so new
request sizes rarely recompile and no token round-trips to the host. Rows are sharded over the
mesh's batch axes, parameters by the model's sharding rules.

Reproducibility: row (prompt i, sample j) draws from key fold_in(fold_in(key(seed), o + i), j)
(o = SamplingParams.prompt_offset), folded again with the step, so the same seed and prompts
give the same tokens whatever the chunking; a seed of None draws a fresh one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import secrets
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pivotrl_jax.models import (
    DEFAULT_RULES,
    ModelConfig,
    ShardingRules,
    activation_sharding,
    load_model,
    param_shardings,
)
from pivotrl_jax.models.sharding import single_device_mesh
from pivotrl_jax.rollout.base import Completion, SamplingParams
from pivotrl_jax.rollout.buckets import bucket
from pivotrl_jax.rollout.decode import Decoded, generate

TRUNCATIONS = ("error", "left")


@dataclasses.dataclass(frozen=True)
class JaxEngineOptions:
    """How the engine batches and bounds requests (not what it samples: see SamplingParams)."""

    max_batch_size: int = 64  # rows per compiled call; rounded up to the data-parallel degree
    min_batch_bucket: int = 8  # smallest padded row count
    max_context: int | None = None  # prompt + max_new_tokens limit; None: the model's maximum
    truncation: str = "error"  # a too-long prompt: "error", or "left" (keep its last tokens)
    min_prompt_bucket: int = 16  # smallest padded prompt length
    prompt_buckets_per_octave: int = 2  # prompt lengths 16, 24, 32, 48, ...: <= 1/3 padding
    min_new_tokens_bucket: int = 16  # smallest compiled decode buffer
    prefill_logits_bytes: int = 256 * 2**20  # bound on the [B, C, V] f32 logits of a prefill chunk
    stop_at_eos: bool = True  # the model config's eos_token_id(s) join every request's stop ids
    # Float32 matmuls on GPU/TPU default to TF32 / bf16 passes (logprobs off by ~1e-3);
    # "highest" makes them true float32. None follows JAX's global setting.
    matmul_precision: str | None = None

    def __post_init__(self):
        if self.truncation not in TRUNCATIONS:
            raise ValueError(f"truncation {self.truncation!r} is not one of {TRUNCATIONS}")
        names = (
            "max_batch_size",
            "min_batch_bucket",
            "min_prompt_bucket",
            "prompt_buckets_per_octave",
            "min_new_tokens_bucket",
        )
        for name in names:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


class JaxEngine:
    """The `RolloutEngine` that samples with the policy's own JAX parameters on a mesh.

    Args:
      model: an NNX `Transformer` (its parameters are placed on `mesh` by `rules`).
      config: the model's `ModelConfig` (default: `model.config`).
      mesh: where to run (default: the first device); rows go over the batch axes of `rules`.
      weight_version: the tag of the initial weights on every Completion.
    """

    def __init__(
        self,
        model: nnx.Module,
        *,
        config: ModelConfig | None = None,
        mesh: Mesh | None = None,
        rules: ShardingRules = DEFAULT_RULES,
        options: JaxEngineOptions | None = None,
        weight_version: Any = 0,
    ):
        self.config = config or model.config
        self.mesh = mesh or single_device_mesh()
        self.rules = rules
        self.options = options or JaxEngineOptions()
        self.max_context = self.options.max_context or self.config.max_position_embeddings
        self._data_parallel = math.prod(
            self.mesh.shape[a] for a in rules.batch if a in self.mesh.shape
        )
        dp = self._data_parallel
        self._max_rows = -(-self.options.max_batch_size // dp) * dp
        self._graphdef, state = nnx.split(model)
        self._shardings = param_shardings(state, self.mesh, rules)
        self._params: nnx.State | None = None
        self._fns: dict[tuple, Any] = {}
        self.weight_version = weight_version
        eos = self.config.eos_token_id if self.options.stop_at_eos else None
        self._eos_ids = set() if eos is None else {eos} if isinstance(eos, int) else set(eos)
        self._place(state)

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | os.PathLike,
        *,
        mesh: Mesh | None = None,
        rules: ShardingRules = DEFAULT_RULES,
        dtype: str | None = None,
        param_dtype: str | None = None,
        options: JaxEngineOptions | None = None,
        weight_version: Any = 0,
    ) -> JaxEngine:
        """An engine on an HF safetensors folder (or a native one); `dtype` is the compute dtype,
        `param_dtype` the storage dtype (both default to the checkpoint's)."""
        overrides = {k: v for k, v in (("dtype", dtype), ("param_dtype", param_dtype)) if v}
        mesh = mesh or single_device_mesh()
        model, config = load_model(model_dir, mesh=mesh, rules=rules, **overrides)
        return cls(
            model,
            config=config,
            mesh=mesh,
            rules=rules,
            options=options,
            weight_version=weight_version,
        )

    # ---------------------------------------------------------------------------------------
    # Weights.

    @property
    def graphdef(self) -> nnx.GraphDef:
        return self._graphdef

    @property
    def params(self) -> nnx.State:
        self._check_open()
        return self._params

    def update_weights(
        self, source: nnx.State | nnx.Module | str | os.PathLike, version: Any
    ) -> None:
        """Swaps in new parameters and tags later completions with `version`.

        `source` is an `nnx.State` with this model's structure (typically the trainer's params,
        already on device), an NNX model, or a model folder. Arrays already laid out as this
        engine wants are used as they are (no copy); others move device to device (resharded
        and cast to the engine's dtypes on device). The engine keeps references to the arrays
        it is given: do not donate them to a later jitted step while they serve rollouts.
        """
        self._check_open()
        if isinstance(source, str | os.PathLike):
            overrides = {"dtype": self.config.dtype, "param_dtype": self.config.param_dtype}
            source, _ = load_model(source, mesh=self.mesh, rules=self.rules, **overrides)
        if isinstance(source, nnx.Module):
            source = nnx.state(source)
        self._place(source)
        self.weight_version = version

    def _place(self, state: nnx.State) -> None:
        """Puts the arrays of `state` on this engine's shardings (no copy where they already
        are), in its dtypes, under its own tree (so Variable metadata need not match)."""
        leaves = jax.tree.leaves_with_path(state)
        paths = [jax.tree_util.keystr(p) for p, _ in leaves]
        arrays = [x for _, x in leaves]
        if self._params is None:  # the constructor's own state defines the layout
            self._treedef = jax.tree.structure(state)
            self._paths = paths
            self._sharding_leaves = jax.tree.leaves(self._shardings)
            self._dtypes = [x.dtype for x in arrays]
            self._shapes = [x.shape for x in arrays]
        elif paths != self._paths:
            diff = sorted(set(paths) ^ set(self._paths))[:3]
            raise ValueError(f"update_weights: parameters differ from the engine's model {diff}")
        for path, x, shape in zip(paths, arrays, self._shapes):
            if x.shape != shape:
                raise ValueError(
                    f"update_weights: {path} has shape {x.shape}, the engine's model {shape}"
                )
        placed = jax.device_put(arrays, self._sharding_leaves)  # a no-op where already there
        placed = [x if x.dtype == d else x.astype(d) for x, d in zip(placed, self._dtypes)]
        self._params = jax.tree.unflatten(self._treedef, placed)

    # ---------------------------------------------------------------------------------------
    # Generation.

    def generate(
        self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams, n: int = 1
    ) -> list[list[Completion]]:
        """`n` completions for each prompt, in prompt order; see the module docstring."""
        self._check_open()
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        prompts = [self._prepare(i, p, params.max_new_tokens) for i, p in enumerate(prompt_ids)]
        if not prompts:
            return []
        seed = params.seed if params.seed is not None else secrets.randbits(31)
        base_key = _base_key(seed)
        offset = np.asarray([params.prompt_offset, 0], np.int32)  # (prompt, sample)
        rows = sorted(
            ((i, j) for i in range(len(prompts)) for j in range(n)),
            key=lambda r: -len(prompts[r[0]]),
        )
        greedy = params.temperature == 0
        filtered = not greedy and (params.top_k > 0 or params.top_p < 1)
        M = bucket(params.max_new_tokens, minimum=self.options.min_new_tokens_bucket)
        stops = sorted(set(params.stop_token_ids) | self._eos_ids)
        stop_ids = np.full(bucket(max(len(stops), 1), minimum=4), -1, np.int32)
        stop_ids[: len(stops)] = stops
        scalars = (
            jnp.int32(params.max_new_tokens),
            jnp.float32(params.temperature),
            jnp.int32(params.top_k),
            jnp.float32(params.top_p),
            jnp.asarray(stop_ids),
        )
        pending = []
        for start in range(0, len(rows), self._max_rows):  # dispatch all chunks, then wait
            chunk = rows[start : start + self._max_rows]
            pending.append(
                (chunk, self._run(chunk, prompts, base_key, offset, scalars, M, greedy, filtered))
            )
        out: list[list[Completion | None]] = [[None] * n for _ in prompts]
        for chunk, decoded in pending:
            d = jax.device_get(decoded)
            for r, (i, j) in enumerate(chunk):
                length = int(d.lengths[r])
                out[i][j] = Completion(
                    token_ids=d.tokens[r, :length].tolist(),
                    logprobs=d.logprobs[r, :length].tolist(),
                    finish_reason="stop" if d.stopped[r] else "length",
                    weight_version=self.weight_version,
                )
        return out

    def _prepare(self, index: int, prompt: Sequence[int], max_new_tokens: int) -> np.ndarray:
        ids = np.asarray(prompt, dtype=np.int64).reshape(-1)
        V = self.config.vocab_size
        if ids.size == 0:
            raise ValueError(f"prompt {index} is empty")
        if ids.min() < 0 or ids.max() >= V:
            raise ValueError(f"prompt {index} has a token id outside [0, {V})")
        room = self.max_context - max_new_tokens
        if room < 1:
            raise ValueError(
                f"max_new_tokens={max_new_tokens} leaves no room for a prompt in "
                f"the context of {self.max_context} tokens"
            )
        if ids.size > room:
            if self.options.truncation == "error":
                raise ValueError(
                    f"prompt {index} has {ids.size} tokens; with max_new_tokens="
                    f"{max_new_tokens} at most {room} fit the context of {self.max_context} "
                    "(JaxEngineOptions(truncation='left') keeps the last tokens instead)"
                )
            ids = ids[-room:]
        return ids.astype(np.int32)

    def _run(
        self,
        chunk: list[tuple[int, int]],
        prompts: list[np.ndarray],
        base_key: jax.Array,
        offset: np.ndarray,  # [2] added to each row's (prompt, sample) index for its key
        scalars: tuple,
        M: int,
        greedy: bool,
        filtered: bool,
    ) -> Decoded:
        """Pads one chunk of rows to its buckets and dispatches its compiled program."""
        dp = self._data_parallel
        B = bucket(
            len(chunk), minimum=self.options.min_batch_bucket, multiple=dp, maximum=self._max_rows
        )
        Tp = bucket(
            max(len(prompts[i]) for i, _ in chunk),
            minimum=self.options.min_prompt_bucket,
            maximum=self.max_context,
            per_octave=self.options.prompt_buckets_per_octave,
        )
        distinct = list(dict.fromkeys(i for i, _ in chunk))  # prompts in first-seen order
        U = bucket(len(distinct), minimum=dp, multiple=dp, maximum=B)
        ids = np.zeros((U, Tp), np.int32)
        mask = np.zeros((U, Tp), np.int32)
        for u in range(U):  # padding prompts repeat the first; no row reads them
            prompt = prompts[distinct[u] if u < len(distinct) else distinct[0]]
            ids[u, Tp - len(prompt) :] = prompt
            mask[u, Tp - len(prompt) :] = 1
        slot = {i: u for u, i in enumerate(distinct)}
        padded = chunk + [chunk[0]] * (B - len(chunk))  # padding rows' results are dropped
        index = np.asarray(padded, np.int32)  # [B, 2] (prompt, sample)
        row_prompt = np.asarray([slot[i] for i, _ in padded], np.int32)
        per_token = U * self.config.vocab_size * 4  # bytes of one prefill column of logits
        C = math.gcd(
            Tp, 1 << max(self.options.prefill_logits_bytes // per_token, 1).bit_length() - 1
        )
        rows = lambda x: _host_rows(x, activation_sharding(self.mesh, self.rules, x.shape))
        key_data = jax.random.key_data(_row_keys(base_key, jnp.asarray(index + offset)))
        keys = jax.random.wrap_key_data(rows(np.asarray(key_data)))  # [B] keys
        statics = (M, C, greedy, filtered)
        if statics not in self._fns:  # hashing a large graphdef once per shape, not per call
            self._fns[statics] = _compiled(
                self._graphdef, self.config, self.mesh, self.rules, *statics
            )
        fn = self._fns[statics]
        precision = self.options.matmul_precision
        with jax.default_matmul_precision(precision) if precision else contextlib.nullcontext():
            return fn(self._params, rows(ids), rows(mask), rows(row_prompt), keys, *scalars)

    def close(self) -> None:
        """Drops the parameters; the engine cannot generate afterwards."""
        self._params = None

    def _check_open(self) -> None:
        if self._params is None:
            raise RuntimeError("this JaxEngine is closed")


@functools.lru_cache(maxsize=64)
def _compiled(
    graphdef: nnx.GraphDef,
    config: ModelConfig,
    mesh: Mesh,
    rules: ShardingRules,
    M: int,
    C: int,
    greedy: bool,
    filtered: bool,
):
    """The jitted `decode.generate` for these statics, shared by engines of the same model.

    Its small [B, M] outputs come back replicated, so every process of a multi-host mesh can
    read all rows."""
    return jax.jit(
        functools.partial(
            generate,
            graphdef,
            config=config,
            max_steps=M,
            prefill_chunk=C,
            greedy=greedy,
            filtered=filtered,
            mesh=mesh,
            rules=rules,
        ),
        out_shardings=NamedSharding(mesh, PartitionSpec()),
    )


def _host_rows(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """Host rows, the same on every process, as one array laid out by `sharding` (each process
    fills only its own devices, so the mesh may span several processes)."""
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def _base_key(seed: int) -> jax.Array:
    """key(seed) for any Python int: jax.random.key keeps only 32 bits without x64, so the high
    32 bits of a 64-bit seed are folded in (seeds below 2^32 give plain key(seed))."""
    seed %= 2**64
    key = jax.random.key(seed & 0xFFFFFFFF)
    return jax.random.fold_in(key, seed >> 32) if seed >> 32 else key


@jax.jit
def _row_keys(base_key: jax.Array, index: jax.Array) -> jax.Array:
    """[B] keys fold_in(fold_in(base, prompt), sample) from index [B, 2] = (prompt, sample)."""
    fold = jax.vmap(jax.random.fold_in, in_axes=(None, 0))
    return jax.vmap(jax.random.fold_in)(fold(base_key, index[:, 0]), index[:, 1])
