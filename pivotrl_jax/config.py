"""ml-collections configs: loading `configs/NAME.py[:variant]` with `--config.a.b=value` overrides,
validation with errors that name the key, the resolved config written next to outputs, and the
device mesh built from a config section.

A config file defines `get_config(arg: str | None) -> ml_collections.ConfigDict`. Overrides are
typed by the default value (an int field rejects "1.5"); unknown keys are errors. Library code
below the command layer receives frozen dataclasses, never a ConfigDict.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import ml_collections
from absl import flags
from ml_collections import config_flags

from pivotrl_jax import atomic, distributed
from pivotrl_jax.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
RESOLVED_CONFIG_NAME = "config.json"


def resolve_config_path(spec: str) -> str:
    """`path[:variant]` -> the same with `path` made absolute (cwd first, then the repo root)."""
    path, sep, variant = spec.partition(":")
    candidates = [Path(path), REPO_ROOT / path]
    for p in candidates:
        if p.is_file():
            return str(p.resolve()) + sep + variant
    raise ConfigError(f"config file {path!r} not found (looked in {os.getcwd()} and {REPO_ROOT})")


def split_config_overrides(argv: Sequence[str]) -> list[tuple[str, str | None]]:
    """The `--config.a.b=v` / `--config.a.b v` items of an argv as (dotted key, value or None)."""
    out = []
    for i, arg in enumerate(argv):
        if arg.startswith("--config."):
            key, eq, value = arg[len("--config.") :].partition("=")
            if not eq:
                value = argv[i + 1] if i + 1 < len(argv) else None
            out.append((key, value if eq or value is not None else None))
    return out


def has_path(cfg: ml_collections.ConfigDict, dotted: str) -> bool:
    node: Any = cfg
    for part in dotted.split("."):
        if isinstance(node, ml_collections.ConfigDict) and part in node:
            node = node[part]
        else:
            return False
    return True


def define_config_flag(fv: flags.FlagValues, argv: Sequence[str], default: str | None) -> None:
    """Define `--config` on `fv`; `argv` must be the full argv so overrides get registered."""
    with config_errors(argv, default):  # a default config loads (with the overrides) here
        config_flags.DEFINE_config_file(
            "config",
            default=resolve_config_path(default) if default else None,
            help_string="Config file `configs/NAME.py[:variant]`; override keys with "
            "--config.a.b=v.",
            flag_values=fv,
            lock_config=True,
            sys_argv=list(argv),
        )


@contextlib.contextmanager
def config_errors(argv: Sequence[str], default: str | None = None) -> Iterator[None]:
    """ml-collections' failures while loading a config as ConfigErrors naming the key, or the
    config file and line (its own messages embed a whole traceback)."""
    try:
        yield
    except (AttributeError, KeyError) as e:
        raise ConfigError(_unknown_key_message(argv, e, default)) from None
    except flags.IllegalFlagValueError as e:
        raise ConfigError(_config_file_message(str(e))) from None
    except TypeError as e:
        raise ConfigError(f"config override has the wrong type: {e}") from None
    except SyntaxError as e:
        raise ConfigError(
            f"config file {e.filename}, line {e.lineno}: SyntaxError: {e.msg}"
        ) from None
    except ImportError as e:
        raise ConfigError(f"config file cannot be imported: {type(e).__name__}: {e}") from None


def _config_file_message(message: str) -> str:
    """`bad config value: ...` with an embedded traceback -> where get_config failed and why."""
    if "Traceback (most recent call last)" not in message:
        return f"bad config value: {message}"
    head = message.split("\n", 1)[0].rstrip(": ")
    lines = [x for x in message.splitlines() if x.strip()]
    frames = [x.strip() for x in lines if x.strip().startswith('File "')]
    where = f" ({frames[-1]})" if frames else ""
    return f"{head}: {lines[-1].strip()}{where}"


def parse_with_config(fv: flags.FlagValues, argv: Sequence[str]) -> list[str]:
    """Parse `argv` into `fv`, turning ml-collections' failures into ConfigError naming the key.

    Returns the positional arguments left over (without the program name)."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg.startswith("--config=") or (arg == "--config" and i + 1 < len(argv)):
            spec = arg.partition("=")[2] if "=" in arg else argv[i + 1]
            resolved = resolve_config_path(spec)
            if "=" in arg:
                argv[i] = "--config=" + resolved
            else:
                argv[i + 1] = resolved
    with config_errors(argv):
        rest = fv(argv)[1:]
        if "config" in fv and fv["config"].value is not None:
            _ = fv.config  # forces loading and applying the overrides
    return rest


def _unknown_key_message(argv: Sequence[str], err: Exception, default: str | None) -> str:
    base_argv = [a for a in argv if not a.startswith("--config.")]
    try:
        fv = flags.FlagValues()
        define_config_flag(fv, base_argv, default)
        fv(base_argv, known_only=True)
        cfg = fv.config
    except Exception:  # the base config itself failed; report the original error
        return f"config error: {err}"
    if cfg is None:
        return f"config error: {err}"
    for key, _ in split_config_overrides(argv):
        if not has_path(cfg, key):
            return f"unknown config key {key!r} (known top-level keys: {', '.join(sorted(cfg))})"
    return f"config error: {err}"


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Load `configs/NAME.py[:variant]` and apply overrides such as `"train.lr=1e-6"`.

    The programmatic twin of `--config=... --config.train.lr=1e-6` (used by notebooks and tests).
    """
    argv = ["pivotrl", f"--config={spec}", *[f"--config.{o}" for o in overrides]]
    fv = flags.FlagValues()
    define_config_flag(fv, argv, None)
    parse_with_config(fv, argv)
    return fv.config


def require(cfg: ml_collections.ConfigDict, *dotted_keys: str) -> None:
    """Raise ConfigError naming the first key that is missing or None."""
    for key in dotted_keys:
        node: Any = cfg
        for part in key.split("."):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                raise ConfigError(f"missing required config field {key!r}")
            node = node[part]
        if node is None:
            raise ConfigError(f"required config field {key!r} is not set (--config.{key}=...)")


def to_dict(cfg: ml_collections.ConfigDict) -> dict[str, Any]:
    return cfg.to_dict() if isinstance(cfg, ml_collections.ConfigDict) else dict(cfg)


def write_resolved_config(
    cfg: ml_collections.ConfigDict | dict,
    out_dir: str | os.PathLike,
    name: str = RESOLVED_CONFIG_NAME,
    **extra: Any,
) -> Path:
    """Write the resolved config (plus `extra` entries such as the command line) as JSON; with
    several processes only the primary one writes."""
    path = Path(out_dir) / name
    if distributed.is_primary():
        data = {"config": to_dict(cfg) if cfg is not None else None, **extra}
        atomic.write_json(path, data)
    return path


def mesh_from_config(shape: Sequence[int], axis_names: Sequence[str]):
    """A `jax.sharding.Mesh` over all devices with Auto axis types; one -1 entry is inferred.

    >>> mesh_from_config((1, -1), ("data", "fsdp")).axis_names  # doctest: +SKIP
    ('data', 'fsdp')
    """
    import jax  # deferred: commands that need no devices do not import jax

    shape = list(shape)
    if len(shape) != len(axis_names):
        raise ConfigError(f"mesh shape {shape} and axis names {list(axis_names)} differ in length")
    n = jax.device_count()
    if shape.count(-1) > 1:
        raise ConfigError(f"mesh shape {shape} has more than one -1")
    known = 1
    for s in shape:
        if s != -1:
            known *= s
    if -1 in shape:
        if n % known:
            raise ConfigError(f"mesh shape {shape} does not divide the {n} devices")
        shape[shape.index(-1)] = n // known
    elif known != n:
        raise ConfigError(f"mesh shape {shape} needs {known} devices; {n} are present")
    return jax.make_mesh(
        tuple(shape), tuple(axis_names), axis_types=(jax.sharding.AxisType.Auto,) * len(shape)
    )
