"""The part of JSON Schema that tool specs use: types, required, enum, properties, items.

`schema_errors(value, schema)` lists where `value` breaks `schema` (empty: valid). Keywords
checked: `type` (one name or a list), `enum`, `const`, `required`, `properties`,
`additionalProperties: false` (or a schema), `items`, `anyOf`/`oneOf` (valid if any branch is).
Numbers: `integer` accepts 3 and 3.0, `number` any int or float; booleans are neither.
Unknown keywords are ignored, so this check never rejects what full JSON Schema accepts.

`coerce_numeric_strings` turns "3" into 3 where the schema asks for a number, and
`fill_defaults` adds omitted properties that declare a `default`.
"""

from __future__ import annotations

import math
from typing import Any

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "object": (dict,),
    "array": (list,),
    "boolean": (bool,),
    "null": (type(None),),
}


def _is_type(value: Any, name: str) -> bool:
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, _JSON_TYPES.get(name, object))


def schema_errors(value: Any, schema: Any, path: str = "$") -> list[str]:
    """Every violation as "path: what"; [] when `value` conforms."""
    if not isinstance(schema, dict):
        return []
    errors: list[str] = []
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_is_type(value, t) for t in names):
            return [f"{path}: expected {'|'.join(map(str, names))}, got {type(value).__name__}"]
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        errors.append(f"{path}: {value!r} not in enum")
    if "const" in schema and not _same(value, schema["const"]):
        errors.append(f"{path}: {value!r} is not the constant")
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if (
            isinstance(branches, list)
            and branches
            and all(schema_errors(value, b, path) for b in branches)
        ):
            errors.append(f"{path}: matches no branch of {key}")
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for req in schema.get("required") or []:
            if req not in value:
                errors.append(f"{path}: missing required {req!r}")
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                errors.extend(schema_errors(v, props[k], f"{path}.{k}"))
            elif extra is False:
                errors.append(f"{path}: unexpected property {k!r}")
            elif isinstance(extra, dict):
                errors.extend(schema_errors(v, extra, f"{path}.{k}"))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors.extend(schema_errors(item, schema["items"], f"{path}[{i}]"))
    return errors


def _same(a: Any, b: Any) -> bool:
    """JSON equality: booleans never equal numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _wants(schema: dict[str, Any], name: str) -> bool:
    t = schema.get("type")
    return t == name or (isinstance(t, list) and name in t)


def coerce_numeric_strings(value: Any, schema: Any) -> Any:
    """Where the schema asks for a number (integer) and `value` is a string spelling one, the
    number; recursive through properties and items; anything else unchanged."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, str) and not _wants(schema, "string"):
        wants_int, wants_num = _wants(schema, "integer"), _wants(schema, "number")
        if wants_int or wants_num:
            try:
                number = float(value.strip())
            except ValueError:
                return value
            if not math.isfinite(number):
                return value
            if number.is_integer() and (wants_int or "." not in value):
                return int(number)
            return number if wants_num else value
        return value
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        return {k: coerce_numeric_strings(v, props.get(k)) for k, v in value.items()}
    if isinstance(value, list):
        items = schema.get("items")
        return [coerce_numeric_strings(v, items) for v in value]
    return value


def fill_defaults(value: Any, schema: Any) -> Any:
    """`value` with every omitted property that declares a `default` set to it (recursively)."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        out = {k: fill_defaults(v, props.get(k)) for k, v in value.items()}
        for k, sub in props.items():
            if k not in out and isinstance(sub, dict) and "default" in sub:
                out[k] = sub["default"]
        return out
    if isinstance(value, list):
        return [fill_defaults(v, schema.get("items")) for v in value]
    return value
