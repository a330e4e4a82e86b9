"""Write a plain dict back as TOML (`check-config`, the demo's config); None values are left out."""

from __future__ import annotations

import json
from typing import Any


def dumps(data: dict[str, Any]) -> str:
    """TOML for nested dicts, lists of scalars and lists of tables (arrays of tables)."""
    lines: list[str] = []
    _table(data, [], lines, array=False)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(data: dict[str, Any], path: list[str], lines: list[str], *, array: bool) -> None:
    def is_tables(value: Any) -> bool:
        return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)

    scalars = {k: v for k, v in data.items() if not isinstance(v, dict) and not is_tables(v)}
    if path and (scalars or array or not data):
        name = ".".join(_key(p) for p in path)
        lines.extend(["", f"[[{name}]]" if array else f"[{name}]"])
    lines.extend(f"{_key(k)} = {_value(v)}" for k, v in scalars.items() if v is not None)
    for key, value in data.items():
        if isinstance(value, dict):
            _table(value, [*path, key], lines, array=False)
        elif is_tables(value):
            for item in value:
                _table(item, [*path, key], lines, array=True)


def _key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value), ensure_ascii=False)
