"""Field tables as data: one Field per request parameter, checked alike by uplink and simulator.

A field's type is written as the platform's document writes it (its `seed_type`); the
notations read here are those of the seeds so far:

* `S..64`, `S.100` text of at most n characters; `S9` exactly n; `VC(32)` at most n, `C(19)`
  exactly n (characters, or UTF-8 bytes where the checks say so);
* `N.1`, `N..32` a number of at most n digits, decimals allowed (all digits counted);
  `N(8,2)`, `N(4)` at most p digits of which s (default 0) after the point;
* `DT`, `date` a date-time text in the strftime format the checks give under that name;
* `object`, `array` a nested table (`children`), an array of them.

Any text field may name a `format` (a key of `Checks.formats`): it must then parse as a date-time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Kind = Literal["text", "number", "object", "array"]
LengthUnit = Literal["chars", "utf8_bytes"]
Table = Mapping[str, "Field"]
_DOTTED = re.compile(r"^(S|N)(\.{0,2})(\d+)$")  # S..64, S.100, S9, N.1, N..32
_SIZED = re.compile(r"^(VC|C|N)\((\d+)(?:,(\d+))?\)$")  # VC(32), C(19), N(8,2)
_TIME_TYPES = ("DT", "date")  # text whose format is the checks' format of that name
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


@dataclass(frozen=True, slots=True)
class TimeFormat:
    """A named date-time format: the strftime pattern and what an error calls it."""

    pattern: str
    called: str = "a date-time in the format"  # "…: not <called> '<pattern>'"


@dataclass(frozen=True, slots=True)
class Checks:
    """How a table is applied: the named formats, the length unit, what text may hold."""

    formats: Mapping[str, TimeFormat] = field(default_factory=dict)
    length_unit: LengthUnit = "chars"
    integers_as_text: bool = False  # a form platform writes 12 as "12" in a text field
    skip: frozenset[str] = frozenset()  # fields the uplink fills (auth): never checked
    strays: str = ""  # when set, keys no table lists are errors: "k: not a field of <strays>"


@dataclass(frozen=True, slots=True)
class Field:
    """One request parameter as the platform's table states it."""

    name: str
    seed_type: str  # verbatim: S..64, VC(32), N(8,2), DT, object, …
    required: bool = False
    description: str = ""
    choices: tuple[str, ...] = ()  # allowed values, where the table enumerates them
    format: str = ""  # a key of Checks.formats: the text must be such a date-time
    children: Table = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        _parse(self.seed_type)  # an unknown notation fails where the table is written

    @property
    def kind(self) -> Kind:
        """text, number, object or array."""
        return _parse(self.seed_type)[0]

    @property
    def base(self) -> str:
        """S (text), N (number), T (date-time text) or O (object or array)."""
        if self.kind in ("object", "array"):
            return "O"
        if self.time_format_name:
            return "T"
        return "N" if self.kind == "number" else "S"

    @property
    def max_length(self) -> int | None:
        """Most characters (text) or digits (number); None where the type sets no limit."""
        return _parse(self.seed_type)[1]

    @property
    def exact(self) -> bool:
        """Text of exactly `max_length` characters (`S9`, `C(10)`)."""
        return _parse(self.seed_type)[2]

    @property
    def scale(self) -> int | None:
        """Digits allowed after the point; None: any, counted in `max_length`."""
        return _parse(self.seed_type)[3]

    @property
    def time_format_name(self) -> str:
        """The key of Checks.formats this field's text must match ('' for none)."""
        return self.format or (self.seed_type if self.seed_type in _TIME_TYPES else "")

    def check(self, value: object, checks: Checks, where: str = "") -> list[str]:
        """Why `value` (present, not empty) breaks this field's rule; [] when it does not."""
        where = where or self.name
        if self.kind == "object":
            return validate(self.children, value, checks, f"{where}.")
        if self.kind == "array":
            if not isinstance(value, list):
                return [f"{where}: not an array"]
            found: list[str] = []
            for index, item in enumerate(value):
                found += validate(self.children, item, checks, f"{where}[{index}].")
            return found
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return [f"{where}: bad type {type(value).__name__} (expected {self.seed_type})"]
        if self.kind == "number":
            problem = self._number(value)
        elif isinstance(value, float) or (isinstance(value, int) and not checks.integers_as_text):
            problem = f"bad type {type(value).__name__} (expected {self.seed_type})"
        else:
            problem = self._text(render(value), checks)
        if problem is None and self.choices and render(value) not in self.choices:
            problem = f"must be one of {', '.join(self.choices)}"
        return [] if problem is None else [f"{where}: {problem}"]

    def _number(self, value: str | int | float) -> str | None:
        text = render(value)
        if (isinstance(value, float) and not math.isfinite(value)) or not _NUMBER.match(text):
            return f"not a number (expected {self.seed_type})"
        limit, scale = self.max_length, self.scale
        whole, _, fraction = text.lstrip("-").partition(".")
        if scale is None:
            digits = len(whole) + len(fraction)
            return None if limit is None or digits <= limit else self._digits(limit)
        if len(fraction) > scale:
            return f"more than {scale} decimals ({self.seed_type})"
        if limit is not None and len(whole.lstrip("0") or "0") > limit - scale:
            return self._digits(limit - scale)
        return None

    def _digits(self, limit: int) -> str:
        return f"more than {limit} digits ({self.seed_type})"

    def _text(self, text: str, checks: Checks) -> str | None:
        name = self.time_format_name
        if name:
            wanted = checks.formats.get(name, TimeFormat(name))
            try:
                datetime.strptime(text, wanted.pattern)  # a local wall-clock time, no zone
            except ValueError:
                return f"not {wanted.called} {wanted.pattern!r}"
        limit = self.max_length
        if limit is None:
            return None
        size = len(text.encode("utf-8")) if checks.length_unit == "utf8_bytes" else len(text)
        what = "bytes" if checks.length_unit == "utf8_bytes" else "characters"
        if self.exact and size != limit:
            return f"{size} {what}, exactly {limit} required"
        if size > limit:
            return f"{size} {what}, at most {limit} allowed ({self.seed_type})"
        return None


def table(fields: Iterable[Field]) -> dict[str, Field]:
    """A table keyed by field name, in the given order; a repeated name is an error."""
    made: dict[str, Field] = {}
    for item in fields:
        if item.name in made:
            raise ValueError(f"{item.name}: listed twice")
        made[item.name] = item
    return made


def render(value: str | int | float) -> str:
    """How a scalar is written into a form: 5.0 as `5`."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def is_empty(value: object) -> bool:
    """Absent for every seed so far: None, or a blank string."""
    return value is None or (isinstance(value, str) and not value.strip())


def unknown(fields: Table, value: Mapping[str, object], path: str = "") -> list[str]:
    """Keys of `value` the table does not list (typos, the wrong table), with their path."""
    return [f"{path}{key}" for key in value if key not in fields]


def validate(fields: Table, value: object, checks: Checks, path: str = "") -> list[str]:
    """Every way `value` breaks the table, naming fields, never values."""
    if not isinstance(value, Mapping):
        return [f"{path or 'body'}: not an object"]
    problems: list[str] = []
    if checks.strays:
        problems += [f"{k}: not a field of {checks.strays}" for k in unknown(fields, value, path)]
    for name, spec in fields.items():
        if name in checks.skip:
            continue
        item = value.get(name)
        where = f"{path}{name}"
        if is_empty(item) or (spec.kind == "array" and item == []):
            if spec.required:
                problems.append(f"{where}: required field is missing")
            continue
        problems += spec.check(item, checks, where)
    return problems


def _parse(seed_type: str) -> tuple[Kind, int | None, bool, int | None]:
    """(kind, max length, exact, scale) of a type notation; ValueError for an unknown one."""
    if seed_type in ("object", "array"):
        return seed_type, None, False, None  # type: ignore[return-value]
    if seed_type in _TIME_TYPES:
        return "text", None, False, None
    dotted = _DOTTED.match(seed_type)
    if dotted:
        base, dots, size = dotted.groups()
        if base == "N":
            return "number", int(size), False, None
        return "text", int(size), not dots, None
    sized = _SIZED.match(seed_type)
    if sized:
        base, size, scale = sized.groups()
        if base == "N":
            return "number", int(size), False, int(scale or 0)
        return "text", int(size), base == "C", None
    raise ValueError(f"unknown type {seed_type!r} (S..n, Sn, N.n, VC(n), C(n), N(p,s), DT, …)")
