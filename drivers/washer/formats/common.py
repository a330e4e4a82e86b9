"""What the formats share: phase kinds, disinfectant names, pass/fail words, local times."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta, tzinfo
from typing import TypeVar

from agent.inputs import year_problem
from agent.vocabulary.steps import Disinfectant, StepKind
from drivers.washer.receipt import Channel, Phase, ReceiptError, Verdict, WasherCycle

WASHER_KINDS = frozenset(
    {
        StepKind.PRE_CLEAN,
        StepKind.LEAK_TEST,
        StepKind.CLEAN,
        StepKind.ENZYME,
        StepKind.RINSE,
        StepKind.DISINFECT,
        StepKind.STERILIZE,
        StepKind.FINAL_RINSE,
        StepKind.DRY,
    }
)

PHASE_KINDS: dict[str, StepKind] = {
    "预洗": StepKind.PRE_CLEAN,
    "预清洗": StepKind.PRE_CLEAN,
    "测漏": StepKind.LEAK_TEST,
    "测漏检测": StepKind.LEAK_TEST,
    "初洗": StepKind.CLEAN,
    "清洗": StepKind.CLEAN,
    "水洗": StepKind.CLEAN,
    "酶洗": StepKind.ENZYME,
    "多酶清洗": StepKind.ENZYME,
    "漂洗": StepKind.RINSE,
    "消毒": StepKind.DISINFECT,
    "灭菌": StepKind.STERILIZE,
    "终末漂洗": StepKind.FINAL_RINSE,
    "末洗": StepKind.FINAL_RINSE,
    "终末清洗": StepKind.FINAL_RINSE,
    # An alcohol flush dries the channels; WS 507 counts it as part of drying.
    "酒精": StepKind.DRY,
    "酒精冲洗": StepKind.DRY,
    "乙醇": StepKind.DRY,
    "吹干": StepKind.DRY,
    "干燥": StepKind.DRY,
    "气洗": StepKind.DRY,
}

DISINFECTANTS: dict[str, Disinfectant] = {
    "邻苯二甲醛": Disinfectant.OPA,
    "OPA": Disinfectant.OPA,
    "戊二醛": Disinfectant.GLUTARALDEHYDE,
    "过氧乙酸": Disinfectant.PERACETIC_ACID,
    "二氧化氯": Disinfectant.CHLORINE_DIOXIDE,
    "酸性氧化电位水": Disinfectant.ACIDIC_OXIDISING_WATER,
    "酸化水": Disinfectant.ACIDIC_OXIDISING_WATER,
}

PASS_WORDS = ("合格", "通过", "通畅", "正常", "成功", "PASS", "OK")
FAIL_WORDS = ("不合格", "失败", "不通过", "堵塞", "异常", "泄漏", "FAIL", "NG")
NONE_WORDS = ("", "无", "-", "--", "0", "NONE", "N/A")
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y年%m月%d日")
TIME_FORMATS = ("%H:%M:%S", "%H:%M")
DATETIME_FORMATS = (
    *(f"{d} {t}" for d in DATE_FORMATS for t in TIME_FORMATS),
    "%Y-%m-%dT%H:%M:%S",
)
MAX_DURATION = timedelta(hours=12)
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_Day = TypeVar("_Day", date, datetime)


def phase_kind(name: str, extra: Mapping[str, StepKind] | None = None) -> StepKind:
    """The kind of a printed phase name; ReceiptError("unknown_phase") if nobody knows it."""
    key = name.strip()
    kind = (extra or {}).get(key) or PHASE_KINDS.get(key)
    if kind is None:
        raise ReceiptError("unknown_phase", f"no kind for phase {key!r} (configure phase_kinds)")
    return kind


def disinfectant(name: str, extra: Mapping[str, Disinfectant] | None = None) -> Disinfectant:
    """The disinfectant a printed name means; an unknown name is `custom`."""
    key = name.strip()
    for table in (extra or {}, DISINFECTANTS):
        for known, value in table.items():
            if known.upper() in key.upper():
                return value
    return Disinfectant.CUSTOM


def find_disinfectant(text: str) -> Disinfectant | None:
    """The first known disinfectant named anywhere in `text`, if any."""
    for known, value in DISINFECTANTS.items():
        if known in text:
            return value
    return None


def verdict(
    value: str,
    field: str,
    passes: Iterable[str] = PASS_WORDS,
    fails: Iterable[str] = FAIL_WORDS,
) -> Verdict:
    """Read pass/fail words; fail words win (不合格 contains 合格)."""
    upper = value.strip().upper()
    if any(word.upper() in upper for word in fails):
        return "fail"
    if any(word.upper() in upper for word in passes):
        return "pass"
    raise ReceiptError("bad_value", f"{field}: neither a pass nor a fail word")


def number(value: str | None, field: str) -> float | None:
    """A printed number (units ignored); None for an empty cell or dashes."""
    if value is None or value.strip() in NONE_WORDS[:4]:
        return None
    match = _NUMBER.search(value)
    if match is None:
        raise ReceiptError("bad_value", f"{field}: not a number")
    parsed = float(match.group())
    if not math.isfinite(parsed):
        raise ReceiptError("bad_value", f"{field}: not a finite number")
    return parsed


def error_code(value: str | None) -> str:
    """The alarm code as printed, "" for none (无, 0, --)."""
    code = (value or "").strip()
    return "" if code.upper() in NONE_WORDS else code


def parse_date(value: str, formats: Iterable[str] = DATE_FORMATS) -> date:
    """A printed date; ReceiptError("bad_value") if no format fits."""
    for fmt in formats:
        try:
            day = datetime.strptime(value.strip(), fmt).date()
        except ValueError:
            continue
        return plausible(day, "date")
    raise ReceiptError("bad_value", f"date {value.strip()!r} matches no date format")


def plausible(day: _Day, field: str) -> _Day:
    """`day` itself if its year is plausible (2000-2099); ReceiptError("bad_value") otherwise."""
    if problem := year_problem(day):  # a misprint or a washer clock that was reset
        raise ReceiptError("bad_value", f"{field}: {problem}")
    return day


class Clock:
    """Turns printed local times into aware datetimes, rolling over midnight as times go back."""

    def __init__(
        self,
        tz: tzinfo,
        day: date | None,
        datetime_formats: Iterable[str] = DATETIME_FORMATS,
        time_formats: Iterable[str] = TIME_FORMATS,
    ) -> None:
        self.tz = tz
        self.day = day
        self.datetime_formats = tuple(datetime_formats)
        self.time_formats = tuple(time_formats)
        self._last: datetime | None = None

    def at(self, value: str, field: str) -> datetime:
        """The moment `value` means; times only need the date seen before, in print order."""
        text = value.strip()
        for fmt in self.datetime_formats:
            try:
                moment = datetime.strptime(text, fmt)
            except ValueError:
                continue
            return self._seen(moment.replace(tzinfo=self.tz), field)
        for fmt in self.time_formats:
            try:
                clock = datetime.strptime(text, fmt).time()
            except ValueError:
                continue
            return self._seen(self._on_day(clock, field), field)
        raise ReceiptError("bad_value", f"{field}: {text!r} is not a time")

    def _on_day(self, clock: time, field: str) -> datetime:
        if self._last is not None:
            moment = datetime.combine(self._last.date(), clock, self.tz)
            # A cycle never runs a day; a time before the previous one is past midnight.
            return moment + timedelta(days=1) if moment < self._last else moment
        if self.day is None:
            raise ReceiptError("missing_field", f"{field}: a time without a date")
        return datetime.combine(self.day, clock, self.tz)

    def _seen(self, moment: datetime, field: str) -> datetime:
        self._last = plausible(moment, field)
        return moment


def span(phases: tuple[Phase, ...]) -> tuple[datetime, datetime]:
    """The first start and last end of the phases; ReceiptError if there are none."""
    if not phases:
        raise ReceiptError("missing_field", "no phase rows")
    return min(p.started_at for p in phases), max(p.ended_at for p in phases)


def check_order(started: datetime, ended: datetime, field: str) -> None:
    """An end before its start, or hours after it, is a misprint, never a real cycle."""
    if ended < started:
        raise ReceiptError("bad_value", f"{field}: ends before it starts")
    if ended - started > MAX_DURATION:
        raise ReceiptError("bad_value", f"{field}: lasts more than 12 hours")


def labelled_cycle(
    fields: Mapping[str, str],
    phases: tuple[Phase, ...],
    channels: Iterable[Channel],
    header: Clock,
) -> WasherCycle:
    """A cycle from labelled fields (标签: 值) and its phases; header times win over the phases'."""
    started, ended = span(phases)
    started = header.at(fields["start"], "开始时间") if fields.get("start") else started
    ended = header.at(fields["end"], "结束时间") if fields.get("end") else ended
    check_order(started, ended, "cycle")
    return WasherCycle(
        washer=fields.get("washer", ""),
        program=fields["program"],
        cycle_number=fields["cycle"],
        started_at=started,
        ended_at=ended,
        operator=fields.get("operator", ""),
        scope=fields.get("scope", ""),
        phases=phases,
        leak_test=verdict(fields["leak"], "测漏结果") if fields.get("leak") else None,
        channels=tuple(channels),
        error_code=error_code(fields.get("error")),
        result=verdict(fields["result"], "结果"),
    )
