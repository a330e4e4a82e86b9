"""CSV cycle logs: `key,value` rows, a blank line, then a phase table headed 阶段/phase."""

from __future__ import annotations

import csv
import io
from datetime import tzinfo

from drivers.washer.formats.common import (
    Clock,
    check_order,
    disinfectant,
    labelled_cycle,
    number,
    phase_kind,
    verdict,
)
from drivers.washer.receipt import Channel, Phase, ReceiptError, WasherCycle

NAME = "csv"
_KEYS = {
    "设备编号": "washer", "机器号": "washer", "machine": "washer",
    "程序": "program", "program": "program",
    "循环号": "cycle", "循环次数": "cycle", "批次号": "cycle", "cycle": "cycle",
    "操作员": "operator", "operator": "operator",
    "内镜编号": "scope", "scope": "scope",
    "开始时间": "start", "start": "start",
    "结束时间": "end", "end": "end",
    "测漏结果": "leak", "leak_test": "leak",
    "报警代码": "error", "故障代码": "error", "error_code": "error",
    "结果": "result", "result": "result",
}  # fmt: skip
_PHASE_HEADER = {"阶段", "phase"}
_COLUMNS = ("name", "start", "end", "temperature", "disinfectant", "concentration")


def parse(text: str, tz: tzinfo) -> WasherCycle:
    """Parse one cycle file; ReceiptError names what is missing or unreadable."""
    try:
        rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text))]
    except csv.Error as err:
        raise ReceiptError("garbage", f"not CSV: {err}") from err
    fields: dict[str, str] = {}
    channels: list[Channel] = []
    table: list[list[str]] | None = None
    for row in rows:
        if not any(row):
            continue
        if table is not None:
            table.append(row)
        elif row[0] in _PHASE_HEADER:
            table = []
        elif len(row) >= 2 and row[0].endswith(("管道", "通道")):
            channels.append(Channel(row[0], verdict(row[1], row[0])))
        elif len(row) >= 2 and row[0] in _KEYS:
            fields.setdefault(_KEYS[row[0]], row[1])
    if not fields and table is None:
        raise ReceiptError("garbage", "no cycle keys and no phase table")
    if table is None:
        raise ReceiptError("truncated", "no phase table (阶段,…)")
    if "result" not in fields:
        raise ReceiptError("missing_field", "结果 is missing")
    for key, label in (("program", "程序"), ("cycle", "循环号")):
        if not fields.get(key):
            raise ReceiptError("missing_field", f"{label} is missing")
    clock = Clock(tz, None)
    phases = tuple(_phase(row, clock) for row in table)
    return labelled_cycle(fields, phases, channels, Clock(tz, None))


def _phase(row: list[str], clock: Clock) -> Phase:
    if len(row) < 3 or not row[2]:
        raise ReceiptError("truncated", f"phase row {row[0]!r} has no end time")
    cells = dict(zip(_COLUMNS, [*row, "", "", ""], strict=False))
    started = clock.at(cells["start"], cells["name"])
    ended = clock.at(cells["end"], cells["name"])
    check_order(started, ended, cells["name"])
    return Phase(
        name=cells["name"],
        kind=phase_kind(cells["name"]),
        started_at=started,
        ended_at=ended,
        temperature_c=number(cells["temperature"], "温度"),
        disinfectant=disinfectant(cells["disinfectant"]) if cells["disinfectant"] else None,
        concentration_pct=number(cells["concentration"], "浓度"),
    )
