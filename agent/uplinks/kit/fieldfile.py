"""Field tables and field maps read from TOML; every error says `FILE: key: reason`.

[tables.uploadReadData]
fields = [
  { name = "cleanId", type = "S.100", required = true, description = "清洗批次" },
  { name = "status", type = "N.1", choices = ["0", "1"] },
  { name = "items", type = "array", children = [{ name = "code", type = "VC(32)" }] },
]

[maps."reprocessing.read"]
endpoint = "uploadReadData"
fields = [
  { target = "cleanId", source = "cycle_id" },
  { target = "collectionTime", source = "at", format = "DT" },
  { target = "status", source = "state", translate = { ok = "0", broken = "1" } },
  { target = "stepId", constant = "3" },
  { target = "detail.items", source = "steps", each = "reprocessing.step" },
]

[maps."reprocessing.step"]    # no endpoint: used as another map's `each`
fields = [{ target = "code", source = "kind" }]
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.uplinks.kit.fieldmap import FieldMap, RecordMap
from agent.uplinks.kit.fields import Field

_FIELD_KEYS = {"name", "type", "required", "description", "choices", "format", "children"}
_MAP_KEYS = {"target", "source", "constant", "translate", "format", "each"}


class FieldFileError(ValueError):
    """A field file that cannot be used: `FILE: key: reason`."""


@dataclass(frozen=True, slots=True)
class FieldFile:
    """A platform's tables (endpoint → fields by name) and maps (record kind → request)."""

    tables: dict[str, dict[str, Field]]
    maps: dict[str, RecordMap]


def load_field_file(path: Path) -> FieldFile:
    """Read and check a field file; FieldFileError names the file, the key and the reason."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise FieldFileError(f"{path}: {err.__class__.__name__}: cannot be read") from None
    return parse_field_file(text, str(path))


def parse_field_file(text: str, source: str) -> FieldFile:
    """The tables and maps of a field file's text; `source` names it in errors."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise FieldFileError(f"{source}: toml: {err}") from None
    try:
        return _read(document)
    except _Bad as bad:
        raise FieldFileError(f"{source}: {bad.key}: {bad.reason}") from None


class _Bad(Exception):
    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key, self.reason = key, reason


def _read(document: dict[str, Any]) -> FieldFile:
    for key in document:
        if key not in ("tables", "maps"):
            raise _Bad(key, "unknown key (tables, maps)")
    tables = {
        name: _fields(item, f"tables.{name}")
        for name, item in _section(document, "tables", "tables").items()
    }
    entries = {
        kind: _mapping(item, f"maps.{kind}")
        for kind, item in _section(document, "maps", "maps").items()
    }
    maps: dict[str, RecordMap] = {}

    def build(kind: str, using: tuple[str, ...]) -> RecordMap:
        if kind in maps:
            return maps[kind]
        where, entry = f"maps.{kind}", entries[kind]
        _only(entry, {"endpoint", "fields"}, where)
        endpoint = _text(entry.get("endpoint"), f"{where}.endpoint")
        if tables and endpoint and endpoint not in tables:
            raise _Bad(f"{where}.endpoint", f"{endpoint!r} is not a table of this file")
        rules = []
        for i, rule in enumerate(_list(entry.get("fields"), f"{where}.fields")):
            at = f"{where}.fields[{i}]"
            raw = _mapping(rule, at)
            each = _text(raw.get("each"), f"{at}.each")
            if each and each not in entries:
                raise _Bad(f"{at}.each", f"{each!r} is not a map of this file")
            if each in (*using, kind):
                raise _Bad(f"{at}.each", f"{each!r} maps itself")
            rules.append(_rule(raw, at, build(each, (*using, kind)) if each else None))
        maps[kind] = RecordMap(endpoint, tuple(rules))
        return maps[kind]

    for kind in entries:
        build(kind, ())
    return FieldFile(tables, maps)


def _fields(item: object, where: str) -> dict[str, Field]:
    entry = _mapping(item, where)
    _only(entry, {"fields"}, where)
    return _field_list(entry.get("fields"), f"{where}.fields")


def _field_list(items: object, where: str) -> dict[str, Field]:
    made: dict[str, Field] = {}
    for index, raw in enumerate(_list(items, where)):
        spec = _field(_mapping(raw, f"{where}[{index}]"), f"{where}[{index}]")
        if spec.name in made:
            raise _Bad(f"{where}[{index}].name", f"{spec.name!r} listed twice")
        made[spec.name] = spec
    return made


def _field(entry: dict[str, Any], where: str) -> Field:
    _only(entry, _FIELD_KEYS, where)
    children = entry.get("children")
    try:
        return Field(
            name=_text(entry.get("name"), f"{where}.name", required=True),
            seed_type=_text(entry.get("type"), f"{where}.type", required=True),
            required=_flag(entry.get("required", False), f"{where}.required"),
            description=_text(entry.get("description"), f"{where}.description"),
            choices=tuple(
                _text(c, f"{where}.choices", required=True)
                for c in _list(entry.get("choices", []), f"{where}.choices")
            ),
            format=_text(entry.get("format"), f"{where}.format"),
            children={} if children is None else _field_list(children, f"{where}.children"),
        )
    except ValueError as err:
        raise _Bad(f"{where}.type", str(err)) from None


def _rule(entry: dict[str, Any], where: str, each: RecordMap | None) -> FieldMap:
    _only(entry, _MAP_KEYS, where)
    constant = entry.get("constant")
    if constant is not None and (
        isinstance(constant, bool) or not isinstance(constant, str | int | float)
    ):
        raise _Bad(f"{where}.constant", "must be a string or a number")
    translate = _mapping(entry.get("translate", {}), f"{where}.translate")
    for key, value in translate.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _Bad(f"{where}.translate.{key}", "must be a string or a number")
    try:
        return FieldMap(
            target=_text(entry.get("target"), f"{where}.target", required=True),
            source=_text(entry.get("source"), f"{where}.source"),
            constant=constant,
            translate=translate,
            format=_text(entry.get("format"), f"{where}.format"),
            each=each,
        )
    except ValueError as err:
        raise _Bad(where, str(err).split(": ", 1)[-1]) from None


def _section(document: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    return _mapping(document.get(key, {}), where)


def _mapping(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(where, "must be a table")
    return value


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Bad(where, "must be an array" if value is not None else "missing")
    return value


def _text(value: object, where: str, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise _Bad(where, "missing" if value is None else "must be a non-empty string")
    return value


def _flag(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise _Bad(where, "must be true or false")
    return value


def _only(entry: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in entry:
        if key not in allowed:
            raise _Bad(f"{where}.{key}", f"unknown key ({', '.join(sorted(allowed))})")
