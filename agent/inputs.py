"""What every value taken from outside must be: finite, printable text, a plausible date."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# A record's date outside these years is a typo or a reset device clock, never a record to keep;
# it also keeps every date far from the calendar's ends, where arithmetic overflows.
EARLIEST_YEAR = 2000
LATEST_YEAR = 2099
EARLIEST_BIRTH_YEAR = 1900  # a patient's birth date goes back further than any record
YEARS = range(EARLIEST_YEAR, LATEST_YEAR + 1)
BIRTH_YEARS = range(EARLIEST_BIRTH_YEAR, LATEST_YEAR + 1)

# C0, DEL, C1 (CONTROL_BUT_LINES keeps TAB, LF, CR); also the Unicode line separators and
# bidirectional controls, which make a name on the wall screen or in a log look like another.
_LAYOUT = "\u2028\u2029\u202a-\u202e\u2066-\u2069"
CONTROL = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_LAYOUT}]")
CONTROL_BUT_LINES = re.compile(f"[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f{_LAYOUT}]")


def plausible_year(day: date, years: range = YEARS) -> bool:
    """Whether `day` (a date or datetime) falls in `years` (by default 2000-2099)."""
    return day.year in years


def year_problem(day: date, years: range = YEARS) -> str | None:
    """Why `day` is not plausible ("year 1 is outside 2000-2099"), or None when it is."""
    if plausible_year(day, years):
        return None
    return f"year {day.year} is outside {years.start}-{years.stop - 1}"


def _moment(value: str) -> str:
    moment = datetime.strptime(value, "%Y-%m-%d %H:%M:%S")  # a local time, as written
    if problem := year_problem(moment):
        raise ValueError(problem)
    return value


def _birth_day(value: str) -> str:
    if problem := year_problem(date.fromisoformat(value), BIRTH_YEARS):
        raise ValueError(problem)
    return value


# "YYYY-MM-DD HH:MM:SS" (local time, as hospital systems write it), a real time in 2000-2099.
Moment = Annotated[
    str, Field(pattern=r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"), AfterValidator(_moment)
]
BirthDate = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$"), AfterValidator(_birth_day)]


def control_problem(text: str, multiline: bool = False) -> str | None:
    """Why `text` cannot be taken (it holds a control character), or None."""
    found = (CONTROL_BUT_LINES if multiline else CONTROL).search(text)
    if found is None:
        return None
    return f"contains a control character (U+{ord(found[0]):04X})"


class Body(BaseModel):
    """Base of every request body: unknown fields, NaN/Infinity, control characters and
    implausible years refused; `multiline` names the free-text fields that may hold line breaks."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    multiline: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="after")
    @classmethod
    def _plain_values(cls, value: Any, info: ValidationInfo) -> Any:
        _check(value, info.field_name in cls.multiline)
        return value


def _check(value: Any, multiline: bool) -> None:
    if isinstance(value, str):
        if problem := control_problem(value, multiline):
            raise ValueError(problem)
    elif isinstance(value, date):
        if problem := year_problem(value):
            raise ValueError(problem)
    elif isinstance(value, list | tuple):
        for item in value:
            _check(item, multiline)
