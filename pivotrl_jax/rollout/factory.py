"""Build a rollout engine from a config section (what the commands and the trainer share).

engine:
  name: "jax" (in-process, the default) | "sglang"
  max_batch_size, max_context, truncation, dtype        (jax)
  urls: attach to running SGLang servers; empty starts one per `num_servers` on the model
  preset ("gpu" | "cpu"), python, extra_args, num_servers, max_concurrency   (sglang)
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from pivotrl_jax.registry import Registry

ENGINE_BUILDERS: Registry = Registry("engine builder")


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    name: str = "jax"
    max_batch_size: int = 64
    max_context: int = 0  # 0: the model's max_position_embeddings
    truncation: str = "error"  # or "left"
    dtype: str = ""  # compute dtype override ("" = the checkpoint's)
    urls: tuple[str, ...] = ()
    preset: str = "cpu"
    python: str = ""
    extra_args: tuple[str, ...] = ()
    num_servers: int = 1
    max_concurrency: int = 32

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> EngineSpec:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(m) - fields
        if unknown:
            raise ValueError(f"unknown engine options {sorted(unknown)}; known: {sorted(fields)}")
        d = dict(m)
        for k in ("urls", "extra_args"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


@ENGINE_BUILDERS.register("jax")
@contextlib.contextmanager
def _jax(spec: EngineSpec, model_dir: str, mesh: Any = None) -> Iterator[Any]:
    from pivotrl_jax.rollout.jax_engine import JaxEngine, JaxEngineOptions

    options = JaxEngineOptions(
        max_batch_size=spec.max_batch_size,
        max_context=spec.max_context or None,
        truncation=spec.truncation,
    )
    engine = JaxEngine.from_pretrained(
        model_dir, mesh=mesh, dtype=spec.dtype or None, options=options
    )
    try:
        yield engine
    finally:
        engine.close()


@ENGINE_BUILDERS.register("sglang")
@contextlib.contextmanager
def _sglang(spec: EngineSpec, model_dir: str, mesh: Any = None) -> Iterator[Any]:
    from pivotrl_jax.rollout import server
    from pivotrl_jax.rollout.sglang_engine import SglangEngine, SglangEngineOptions

    options = SglangEngineOptions(
        max_concurrency=spec.max_concurrency,
        context_length=spec.max_context or None,
        truncation=spec.truncation if spec.max_context else "error",
    )
    with contextlib.ExitStack() as stack:
        urls, managed = list(spec.urls), []
        if not urls:  # servers of our own: the engine restarts them if they die
            python = spec.python or default_sglang_python()
            for _ in range(spec.num_servers):
                proc = server.launch(
                    server.ServerConfig(
                        model_path=str(model_dir),
                        preset=spec.preset,
                        python=python,
                        extra_args=spec.extra_args,
                    )
                )
                stack.callback(proc.stop)
                urls.append(proc.url)
                managed.append(proc)
        engine = SglangEngine(urls, options=options, managed=managed)
        stack.callback(engine.close)
        yield engine


def engine_config():
    """The `engine` section of a command config, with EngineSpec's defaults."""
    from ml_collections import config_dict

    return config_dict.ConfigDict(dataclasses.asdict(EngineSpec()))


def default_sglang_python() -> str:
    """The project's CPU SGLang environment (`make sglang-env`) if built, else `python`."""
    from pathlib import Path

    venv = Path(__file__).resolve().parents[2] / ".venv-sglang" / "bin" / "python"
    return str(venv) if venv.exists() else "python"


def open_engine(spec: EngineSpec, model_dir: str, mesh: Any = None):
    """A context manager yielding the engine; leaving it closes the engine and any server."""
    return ENGINE_BUILDERS.get(spec.name)(spec, model_dir, mesh)
