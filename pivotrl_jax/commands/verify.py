"""Score responses against demonstrated actions with a functional verifier.

    pivotrl verify --input cases.jsonl --output scored.jsonl [--verifier=tool_call]
        [--verifier_params='{"threshold": 0.3}'] [--param mode=f1 ...] [--on_error=skip]
        [--config=CONFIG.py]

Each input line is `{"tools": [...], "expected_action": {...}, "response": ...}` with optional
`messages`, `env` and `verifier` (see `pivotrl_jax/rewards/cases.py`); each output line is the
input plus `reward` and `info` (reason, matched pairs, timings). A summary (counts, mean reward,
reasons, timing) goes to stderr as JSON. A malformed line stops the run with its file, line and
field and writes nothing; `--on_error=skip` leaves such lines out and counts them. The output is
written under a temporary name and renamed when complete.

Parameters: a config file may set `verifier` (name), `params` (for it), `verifiers` (name ->
params, for rows that name another verifier) and `time_limit_s`; `--verifier_params` (JSON) and
then each `--param key=value` (value read as JSON, else as text) override `params`.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any

from absl import flags

import pivotrl_jax.envs  # noqa: F401  (registers the domains' command sandboxes and verifiers)
from pivotrl_jax import atomic
from pivotrl_jax.errors import ConfigError, InputError
from pivotrl_jax.rewards import (
    VERIFIERS,
    VerifierStats,
    alarm_scope,
    build_verifier,
    run_verifier,
)
from pivotrl_jax.rewards.cases import parse_case

DEFAULT_CONFIG = None
_CONFIG_KEYS = frozenset({"verifier", "params", "verifiers", "time_limit_s"})


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("input", None, "JSONL of cases.", flag_values=fv, required=True)
    flags.DEFINE_string(
        "output",
        None,
        "JSONL to write: each case plus reward and info.",
        flag_values=fv,
        required=True,
    )
    flags.DEFINE_string(
        "verifier", None, "Verifier name (default: the config's, else tool_call).", flag_values=fv
    )
    flags.DEFINE_string(
        "verifier_params", None, "Verifier parameters as a JSON object.", flag_values=fv
    )
    flags.DEFINE_multi_string(
        "param",
        [],
        "One verifier parameter as key=value (value as JSON, "
        "else text); repeatable, applied after --verifier_params.",
        flag_values=fv,
    )
    flags.DEFINE_float(
        "time_limit_s", None, "Seconds per verification (default: config, else 10).", flag_values=fv
    )
    flags.DEFINE_enum(
        "on_error",
        "fail",
        ["fail", "skip"],
        "A malformed line: stop with its location, or leave it out and count it.",
        flag_values=fv,
    )


def _config(fv: flags.FlagValues) -> dict[str, Any]:
    cfg = fv.config if "config" in fv and fv["config"].value is not None else None
    if cfg is None:
        return {}
    plain = cfg.to_dict()
    unknown = sorted(set(plain) - _CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"unknown verify config key(s) {unknown}; known: {sorted(_CONFIG_KEYS)}")
    return plain


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def verifier_params(cfg: dict[str, Any], params_json: str | None, pairs: list[str]) -> dict:
    """Config params, then the JSON flag, then each key=value flag."""
    params = dict(cfg.get("params") or {})
    if params_json:
        try:
            extra = json.loads(params_json)
        except ValueError as e:
            raise ConfigError(f"--verifier_params is not JSON: {e}") from None
        if not isinstance(extra, dict):
            raise ConfigError("--verifier_params must be a JSON object")
        params.update(extra)
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ConfigError(f"--param {pair!r}: expected key=value")
        params[key.strip()] = _json_value(value)
    return params


class _Verifiers:
    """Verifiers built once per (name, params)."""

    def __init__(self, default: str, params: dict, per_name: dict[str, dict]):
        self.default, self.params, self.per_name = default, params, per_name
        self._built: dict[str, Any] = {}

    def get(self, name: str | None, params: dict | None) -> tuple[str, Any]:
        name = name or self.default
        if params is None:
            params = self.params if name == self.default else self.per_name.get(name, {})
        key = name + json.dumps(params, sort_keys=True)
        if key not in self._built:
            self._built[key] = build_verifier(name, **params)
        return name, self._built[key]


def _read_rows(path: str):
    """(line number, parsed row or the InputError that line raises) for each non-blank line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError as e:
        raise InputError(f"cannot open: {e.strerror}", path=path) from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            yield n, InputError(f"not valid JSON ({e.msg})", path=path, line=n, reason="bad_json")


def main(fv: flags.FlagValues) -> int:
    cfg = _config(fv)
    default = fv.verifier or cfg.get("verifier") or "tool_call"
    if default not in VERIFIERS:
        raise ConfigError(f"unknown verifier {default!r}; known: {', '.join(VERIFIERS.names())}")
    params = verifier_params(cfg, fv.verifier_params, fv.param)
    time_limit = fv.time_limit_s if fv.time_limit_s is not None else cfg.get("time_limit_s", 10.0)
    verifiers = _Verifiers(default, params, dict(cfg.get("verifiers") or {}))
    try:
        verifiers.get(None, None)
    except (TypeError, ValueError, KeyError) as e:
        raise ConfigError(f"verifier {default!r}: {e}") from None

    stats, skipped, first_skips, out = VerifierStats(), Counter(), [], []
    with alarm_scope():  # one SIGALRM handler for the whole file
        for n, row in _read_rows(fv.input):
            try:
                if isinstance(row, InputError):
                    raise row
                case = parse_case(row, fv.input, n)
                try:
                    name, verifier = verifiers.get(case.verifier, case.params)
                except (TypeError, ValueError, KeyError) as e:
                    raise InputError(
                        str(e).strip('"'),
                        path=fv.input,
                        line=n,
                        field="verifier",
                        reason="bad_verifier",
                    ) from None
            except InputError as e:
                if fv.on_error == "fail":
                    raise
                skipped[e.reason] += 1
                if len(first_skips) < 10:
                    first_skips.append(str(e))
                continue
            res = run_verifier(
                verifier,
                case.state,
                case.expected,
                case.action,
                time_limit_s=time_limit,
                stats=stats,
                name=name,
            )
            out.append({**row, "reward": res.reward, "info": res.info})

    atomic.write_jsonl(fv.output, out)
    summary = {"input": fv.input, "output": fv.output, "written": len(out), **stats.summary()}
    if fv.on_error == "skip":
        summary["skipped"] = sum(skipped.values())
        summary["skipped_reasons"] = dict(skipped.most_common())
        summary["first_skipped"] = first_skips
    print(json.dumps(summary, indent=2, default=str), file=sys.stderr)
    return 0
