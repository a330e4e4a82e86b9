"""Field maps as data: how a domain's neutral record becomes a platform's fields.

Each `FieldMap` fills one target field, in this order of operations:

* *take* `source`, a field of the record (a rename when the names differ; several targets may
  take the same source; `a.b` reads field `b` of the record's object `a`), or a `constant`;
* *map each*: with `each`, the source is a list and every element is mapped by that map;
* *translate* the value through `translate` (a dictionary: record value → platform value);
* *format* it: `format` turns an ISO 8601 date-time into the given strftime pattern (its wall
  clock as written: the domain chose the zone), or, without a `%`, the pattern the caller names
  so (a platform's configurable `DT`).

The target is written the same way: `a.b` is field `b` of the request's object `a`, created
when a value is first put in it. An absent or empty source leaves the target out: the table's
`required` says whether it may.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from agent.uplinks.kit.fields import is_empty

Scalar = str | int | float


@dataclass(frozen=True, slots=True)
class FieldMap:
    """How one target field is filled."""

    target: str
    source: str = ""  # the record's field; "" with a constant
    constant: Scalar | None = None
    translate: Mapping[str, Scalar] = field(default_factory=dict, compare=False, hash=False)
    format: str = ""  # strftime pattern (has a `%`) or the name of one given to `apply`
    each: RecordMap | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        if bool(self.source) == (self.constant is not None):
            raise ValueError(f"{self.target}: give exactly one of source and constant")
        if self.each is not None and (self.translate or self.format or not self.source):
            raise ValueError(f"{self.target}: each maps a source list, without translate/format")


@dataclass(frozen=True, slots=True)
class RecordMap:
    """One kind of neutral record → one request of the platform."""

    endpoint: str  # "" for a map used only as another map's `each`
    fields: tuple[FieldMap, ...]


def apply(
    record_map: RecordMap, record: Mapping[str, object], formats: Mapping[str, str] | None = None
) -> tuple[dict[str, object], list[str]]:
    """(fields, problems): the mapped fields in map order; problems name fields, never values."""
    mapped: dict[str, object] = {}
    problems: list[str] = []
    for rule in record_map.fields:
        value = rule.constant if rule.constant is not None else _get(record, rule.source)
        if is_empty(value):
            continue
        if rule.each is not None:
            value, found = _each(rule, rule.each, value, formats)
            problems += found
            _put(mapped, rule.target, value)
            continue
        if rule.translate:
            key = value if isinstance(value, str) else str(value)
            if key not in rule.translate:
                problems.append(f"{rule.target}: {rule.source} has no translation")
                continue
            value = rule.translate[key]
        if rule.format:
            try:
                value = _format(rule, value, formats or {})
            except ValueError as err:
                problems.append(f"{rule.target}: {err}")
                continue
        _put(mapped, rule.target, value)
    return mapped, problems


def _get(record: Mapping[str, object], path: str) -> object:
    if "." not in path:
        return record.get(path)
    value: object = record
    for name in path.split("."):
        # Records are dicts: the exact type check spares the ABC check most of the time.
        if type(value) is not dict and not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return value


def _put(mapped: dict[str, object], path: str, value: object) -> None:
    if "." not in path:
        mapped[path] = value
        return
    *parents, name = path.split(".")
    for parent in parents:
        child = mapped.setdefault(parent, {})
        mapped = child if isinstance(child, dict) else {}
    mapped[name] = value


def _each(
    rule: FieldMap, element_map: RecordMap, value: object, formats: Mapping[str, str] | None
) -> tuple[list[dict[str, object]], list[str]]:
    """Every element of a source list mapped; problems carry the element's index."""
    if not isinstance(value, list):
        return [], [f"{rule.target}: {rule.source} is not a list"]
    elements, problems = [], []
    for index, element in enumerate(value):
        mapped, found = apply(element_map, element if isinstance(element, Mapping) else {}, formats)
        elements.append(mapped)
        problems += [f"{rule.target}[{index}].{problem}" for problem in found]
    return elements, problems


def _format(rule: FieldMap, value: object, formats: Mapping[str, str]) -> str:
    """The value written in the rule's pattern; ValueError saying why it cannot be."""
    pattern = rule.format if "%" in rule.format else formats.get(rule.format)
    if pattern is None:
        raise ValueError(f"no format named {rule.format!r}")
    try:
        if not isinstance(value, str):
            raise TypeError
        return datetime.fromisoformat(value).strftime(pattern)
    except (TypeError, ValueError):
        raise ValueError(f"{rule.source or 'constant'} is not an ISO 8601 date-time") from None
