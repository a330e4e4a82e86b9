"""Field maps as data: how a domain's neutral record becomes a platform's fields.

Each `FieldMap` fills one target field, in this order of operations:

* *take* `source`, a field of the record (a rename when the names differ; several targets may
  take the same source), or a `constant`;
* *translate* the value through `translate` (a dictionary: record value → platform value);
* *format* it: `format` turns an ISO 8601 date-time into the given strftime pattern (its wall
  clock as written: the domain chose the zone), or, without a `%`, the pattern the caller names
  so (a platform's configurable `DT`).

An absent or empty source leaves the target out: the table's `required` says whether it may.
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

    def __post_init__(self) -> None:
        if bool(self.source) == (self.constant is not None):
            raise ValueError(f"{self.target}: give exactly one of source and constant")


@dataclass(frozen=True, slots=True)
class RecordMap:
    """One kind of neutral record → one request of the platform."""

    endpoint: str
    fields: tuple[FieldMap, ...]


def apply(
    record_map: RecordMap, record: Mapping[str, object], formats: Mapping[str, str] | None = None
) -> tuple[dict[str, object], list[str]]:
    """(fields, problems): the mapped fields in map order; problems name fields, never values."""
    mapped: dict[str, object] = {}
    problems: list[str] = []
    for rule in record_map.fields:
        value = rule.constant if rule.constant is not None else record.get(rule.source)
        if is_empty(value):
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
        mapped[rule.target] = value
    return mapped, problems


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
