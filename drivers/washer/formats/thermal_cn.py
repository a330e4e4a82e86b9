"""Chinese thermal-printer receipts (OER-AW, 新华, 老肯 style): `标签: 值` lines, a phase table."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import tzinfo

from agent.vocabulary.steps import StepKind
from drivers.washer.formats.common import (
    Clock,
    check_order,
    disinfectant,
    find_disinfectant,
    labelled_cycle,
    number,
    parse_date,
    phase_kind,
    verdict,
)
from drivers.washer.receipt import Channel, Phase, ReceiptError, WasherCycle

NAME = "thermal_cn"
_LABELS = {
    "washer": ("清洗消毒机编号", "机器号", "机器编号", "设备编号", "设备号", "机号"),
    "program": ("程序", "程序名称", "程序名", "清洗程序"),
    "cycle": ("循环次数", "循环号", "批次号", "批号", "运行次数", "洗消批次", "循环计数"),
    "date": ("日期",),
    "start": ("开始时间", "开始"),
    "end": ("结束时间", "结束"),
    "operator": ("操作员", "操作人员", "操作者", "操作人"),
    "scope": ("内镜编号", "内镜号", "内镜"),
    "leak": ("测漏结果", "测漏"),
    "error": ("报警代码", "故障代码", "报警", "故障", "错误代码"),
    "result": ("结果", "清洗结果", "消毒结果", "运行结果", "总结果"),
    "disinfectant": ("消毒剂", "消毒液"),
    "concentration": ("浓度", "消毒剂浓度"),
    "disinfect_temp": ("消毒温度",),
}
_FIELD_OF = {label: field for field, labels in _LABELS.items() for label in labels}
_CJK = r"\u4e00-\u9fff"
# Possessive quantifiers, and matches that start only where a run starts: a receipt line is
# printer input, and backtracking over a long one must not take time quadratic in its length.
_FIELD = re.compile(
    rf"(?<![{_CJK}A-Za-z])(?P<label>[{_CJK}A-Za-z]++)\s*+:\s*+"
    rf"(?P<value>.*?)(?=(?<!\s)\s{{2,}}+[{_CJK}]++\s*+:|$)"
)
_TIME = r"\d{1,2}:\d{2}(?::\d{2})?+"
_ROW = re.compile(
    rf"^(?P<name>[{_CJK}]{{1,8}})\s++(?P<start>{_TIME})"
    rf"(?:\s*+(?:-|~|至|—)?+\s*+(?P<end>{_TIME}))?(?P<rest>.*)$"
)
_TEMP = re.compile(r"(?<![\d.])(\d++(?:\.\d++)?+)\s*+(?:℃|°C|度)")
_PCT = re.compile(r"(?<![\d.])(\d++(?:\.\d++)?+)\s*+%")


def parse(text: str, tz: tzinfo) -> WasherCycle:
    """Parse one receipt; ReceiptError names the missing or unreadable part."""
    fields: dict[str, str] = {}
    channels: list[Channel] = []
    rows: list[tuple[str, str, str, str]] = []
    for raw in text.splitlines():
        line = raw.replace("：", ":").replace("\u3000", " ").strip()
        row = _ROW.match(line)
        if row is not None:
            if row["end"] is None:
                raise ReceiptError("truncated", f"phase {row['name']} has no end time")
            rows.append((row["name"], row["start"], row["end"], row["rest"]))
            continue
        for match in _FIELD.finditer(line):
            label, value = match["label"], match["value"].strip()
            if label.endswith(("管道", "通道")):
                channels.append(Channel(label, verdict(value, label)))
            elif label in _FIELD_OF:
                fields.setdefault(_FIELD_OF[label], value)
    if not fields and not rows:
        raise ReceiptError("garbage", "no thermal_cn labels or phase rows")
    if "result" not in fields:
        raise ReceiptError("truncated", "the receipt ends before its 结果 line")
    for field in ("program", "cycle"):
        if not fields.get(field):
            raise ReceiptError("missing_field", f"{_LABELS[field][0]} is missing")
    day = parse_date(fields["date"]) if fields.get("date") else None
    phases = _phases(rows, fields, Clock(tz, day))
    return labelled_cycle(fields, phases, channels, Clock(tz, day))


def _phases(
    rows: list[tuple[str, str, str, str]], fields: dict[str, str], clock: Clock
) -> tuple[Phase, ...]:
    # A disinfectant printed once under the table belongs to the disinfection phase.
    agent = disinfectant(fields["disinfectant"]) if fields.get("disinfectant") else None
    concentration = number(fields.get("concentration"), "浓度")
    if concentration is None and fields.get("disinfectant"):
        concentration = number(_pct(fields["disinfectant"]), "浓度")
    temperature = number(fields.get("disinfect_temp"), "消毒温度")
    phases: list[Phase] = []
    for name, start, end, rest in rows:
        started = clock.at(start, name)
        ended = clock.at(end, name)
        check_order(started, ended, name)
        temp = _TEMP.search(rest)
        pct = _PCT.search(rest)
        phase = Phase(
            name=name,
            kind=phase_kind(name),
            started_at=started,
            ended_at=ended,
            temperature_c=float(temp.group(1)) if temp else None,
            disinfectant=find_disinfectant(rest),
            concentration_pct=float(pct.group(1)) if pct else None,
        )
        if phase.kind in {StepKind.DISINFECT, StepKind.STERILIZE}:
            phase = replace(
                phase,
                disinfectant=agent if phase.disinfectant is None else phase.disinfectant,
                concentration_pct=_first(phase.concentration_pct, concentration),
                temperature_c=_first(phase.temperature_c, temperature),
            )
        elif phase.kind is StepKind.LEAK_TEST and "leak" not in fields and rest.strip(" -"):
            fields["leak"] = rest.strip()  # 新华 style: the leak result in the row
        phases.append(phase)
    return tuple(phases)


def _first(value: float | None, default: float | None) -> float | None:
    return default if value is None else value


def _pct(value: str) -> str | None:
    match = _PCT.search(value)
    return match.group(1) if match else None
