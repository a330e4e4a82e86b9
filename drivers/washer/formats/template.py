"""A configurable format: per field a regex with a named group, so a new model needs no code."""

from __future__ import annotations

import re
from datetime import tzinfo
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator, model_validator

from agent.config import Section
from agent.vocabulary.steps import Disinfectant, StepKind
from drivers.washer.formats.common import (
    DATE_FORMATS,
    DATETIME_FORMATS,
    FAIL_WORDS,
    PASS_WORDS,
    TIME_FORMATS,
    WASHER_KINDS,
    Clock,
    check_order,
    disinfectant,
    error_code,
    number,
    parse_date,
    phase_kind,
    span,
    verdict,
)
from drivers.washer.receipt import Channel, Phase, ReceiptError, Verdict, WasherCycle

NAME = "template"
_FIELDS = (
    "machine", "program", "cycle", "date", "started", "ended", "operator", "scope",
    "leak_test", "error_code", "result",
)  # fmt: skip
_PHASE_GROUPS = {"name", "start", "end", "temperature", "disinfectant", "concentration"}
Words = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


def compile_regex(key: str, pattern: str, required: set[str], allowed: set[str]) -> re.Pattern[str]:
    """Compile a template regex; ValueError names `key` and what is wrong."""
    try:
        compiled = re.compile(pattern, re.MULTILINE)
    except re.error as err:
        raise ValueError(f"{key}: invalid regular expression: {err}") from err
    groups = set(compiled.groupindex)
    if missing := required - groups:
        names = ", ".join(f"(?P<{g}>...)" for g in sorted(missing))
        raise ValueError(f"{key}: the pattern needs the named group(s) {names}")
    if unknown := groups - allowed:
        raise ValueError(
            f"{key}: unknown named group(s) {sorted(unknown)}; allowed {sorted(allowed)}"
        )
    return compiled


class TemplateConfig(Section):
    """[sources.<name>.template]: how to read one washer model's receipts."""

    machine: str | None = None
    program: str
    cycle: str
    date: str | None = None  # needed when the times carry no date
    started: str | None = None  # default: the first phase's start
    ended: str | None = None  # default: the last phase's end
    operator: str | None = None
    scope: str | None = None
    leak_test: str | None = None
    error_code: str | None = None
    result: str
    channel: str | None = None  # every match is a channel: groups `name` and `result`
    phase_row: (
        str  # every match is a phase: name, start, end [temperature disinfectant concentration]
    )
    date_formats: list[str] = list(DATE_FORMATS)
    time_formats: list[str] = list(TIME_FORMATS)
    datetime_formats: list[str] = list(DATETIME_FORMATS)
    phase_kinds: dict[str, StepKind] = {}
    disinfectants: dict[str, Disinfectant] = {}
    pass_words: Words = list(PASS_WORDS)
    fail_words: Words = list(FAIL_WORDS)

    @field_validator(*_FIELDS)
    @classmethod
    def _field_regex(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            key = info.field_name or "?"
            compile_regex(key, value, {key}, {key})
        return value

    @field_validator("channel")
    @classmethod
    def _channel_regex(cls, value: str | None) -> str | None:
        if value is not None:
            compile_regex("channel", value, {"name", "result"}, {"name", "result"})
        return value

    @field_validator("phase_row")
    @classmethod
    def _phase_regex(cls, value: str) -> str:
        compile_regex("phase_row", value, {"name", "start", "end"}, _PHASE_GROUPS)
        return value

    @field_validator("phase_kinds")
    @classmethod
    def _washer_kinds(cls, value: dict[str, StepKind]) -> dict[str, StepKind]:
        for name, kind in value.items():
            if kind not in WASHER_KINDS:
                raise ValueError(f"phase_kinds.{name}: {kind.value} is not a washer phase kind")
        return value

    @model_validator(mode="after")
    def _words_disjoint(self) -> TemplateConfig:
        if common := set(self.pass_words) & set(self.fail_words):
            raise ValueError(f"pass_words and fail_words share {sorted(common)}")
        return self


class TemplateParser:
    """Parses receipts with a validated TemplateConfig."""

    def __init__(self, config: TemplateConfig) -> None:
        self.config = config
        self.fields = {
            key: compile_regex(key, pattern, {key}, {key})
            for key in _FIELDS
            if (pattern := getattr(config, key)) is not None
        }
        self.channel = (
            re.compile(config.channel, re.MULTILINE) if config.channel is not None else None
        )
        self.phase_row = re.compile(config.phase_row, re.MULTILINE)

    def parse(self, text: str, tz: tzinfo) -> WasherCycle:
        """Parse one receipt; ReceiptError names the template key that found nothing."""
        values = {key: found for key in self.fields if (found := self._find(key, text))}
        rows = list(self.phase_row.finditer(text))
        if not rows and not any(values.values()):
            raise ReceiptError("garbage", "no template field and no phase row matched")
        for key in ("result", "program", "cycle"):
            if key not in values:
                reason = "truncated" if key == "result" else "missing_field"
                raise ReceiptError(reason, f"template key {key} matched nothing")
        config = self.config
        day = parse_date(values["date"], config.date_formats) if "date" in values else None
        clock = Clock(tz, day, config.datetime_formats, config.time_formats)
        phases = tuple(self._phase(row, clock) for row in rows)
        started, ended = span(phases)
        header = Clock(tz, day, config.datetime_formats, config.time_formats)
        if "started" in values:
            started = header.at(values["started"], "started")
        if "ended" in values:
            ended = header.at(values["ended"], "ended")
        check_order(started, ended, "cycle")
        leak = values.get("leak_test")
        return WasherCycle(
            washer=values.get("machine", ""),
            program=values["program"],
            cycle_number=values["cycle"],
            started_at=started,
            ended_at=ended,
            operator=values.get("operator", ""),
            scope=values.get("scope", ""),
            phases=phases,
            leak_test=self._verdict(leak, "leak_test") if leak else None,
            channels=tuple(
                Channel(m["name"].strip(), self._verdict(m["result"], "channel"))
                for m in (self.channel.finditer(text) if self.channel else ())
            ),
            error_code=error_code(values.get("error_code")),
            result=self._verdict(values["result"], "result"),
        )

    def _find(self, key: str, text: str) -> str | None:
        match = self.fields[key].search(text)
        return None if match is None or match[key] is None else match[key].strip()

    def _verdict(self, value: str, field: str) -> Verdict:
        return verdict(value, field, self.config.pass_words, self.config.fail_words)

    def _phase(self, row: re.Match[str], clock: Clock) -> Phase:
        groups = {k: (v.strip() if v else None) for k, v in row.groupdict().items()}
        name = groups["name"] or ""
        if not groups["start"] or not groups["end"]:
            raise ReceiptError("truncated", f"phase {name!r} has no start or end")
        started, ended = clock.at(groups["start"], name), clock.at(groups["end"], name)
        check_order(started, ended, name)
        agent = groups.get("disinfectant")
        return Phase(
            name=name,
            kind=phase_kind(name, self.config.phase_kinds),
            started_at=started,
            ended_at=ended,
            temperature_c=number(groups.get("temperature"), "temperature"),
            disinfectant=disinfectant(agent, self.config.disinfectants) if agent else None,
            concentration_pct=number(groups.get("concentration"), "concentration"),
        )
