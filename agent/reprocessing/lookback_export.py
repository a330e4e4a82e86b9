"""A lookback's answer as flat rows: the CSV export and the printable page (Chinese headings)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any

from agent.vocabulary.masking import mask_id, mask_name
from agent.vocabulary.steps import STEP_NAMES, StepKind

# (key, Chinese heading, English heading): the export's columns, in order.
COLUMNS = (
    ("scope", "内镜编号", "Scope"),
    ("used_at", "使用时间", "Used at"),
    ("patient_id", "患者ID", "Patient ID"),
    ("patient_name", "患者姓名", "Patient name"),
    ("use_station", "使用工位", "Use station"),
    ("use_operator", "使用操作员", "Used by"),
    ("clean_id", "洗消周期", "Cycle"),
    ("opened_at", "洗消开始", "Cycle opened"),
    ("completed_at", "洗消完成", "Cycle completed"),
    ("compliance", "合规判定", "Verdict"),
    ("override", "放行(人/原因)", "Override (by/reason)"),
    ("steps", "洗消步骤", "Steps"),
    ("washers", "清洗消毒机", "Washer runs"),
    ("batches", "消毒剂批号", "Disinfectant batches"),
    ("operators", "洗消操作员", "Reprocessed by"),
    ("violations", "违规", "Violations"),
)
VERDICTS = {
    "compliant": "合格",
    "non_compliant": "不合格",
    "overridden": "已放行",
    "pending": "待判定",
}
NO_CYCLE = "无洗消记录"  # used without a cycle since the previous use
UNLINKED = "未关联洗消周期"  # a washer run no reprocessing cycle claimed


def flat_rows(
    entries: list[dict[str, Any]], zone: tzinfo | None, *, full: bool
) -> list[dict[str, str]]:
    """One row per entry, times in `zone`; the patient masked unless `full`."""
    when: Callable[[str | None], str] = lambda value: local(value, zone)  # noqa: E731
    rows = []
    for entry in entries:
        use, cycle = entry["use"] or {}, entry["cycle"]
        patient_id, patient_name = use.get("patient_id") or "", use.get("patient_name") or ""
        row = {
            "scope": use.get("scope") or (cycle or {}).get("scope", ""),
            "used_at": when(use.get("used_at")),
            "patient_id": patient_id if full else mask_id(patient_id),
            "patient_name": patient_name if full else mask_name(patient_name),
            "use_station": use.get("station") or "",
            "use_operator": use.get("operator") or "",
        }
        run = entry.get("unlinked_run")
        if run is not None:
            row.update(unlinked_cells(run, when))
        else:
            row.update(cycle_cells(cycle, when) if cycle else {"clean_id": NO_CYCLE if use else ""})
        rows.append({key: row.get(key, "") for key, _, _ in COLUMNS})
    return rows


def cycle_cells(cycle: dict[str, Any], when: Callable[[str | None], str]) -> dict[str, str]:
    """The cycle's columns: verdict, override, steps, washer runs, batches, operators."""
    steps = cycle["steps"]
    override = ""
    if cycle["override_by"]:
        override = f"{cycle['override_by']}: {cycle['override_reason'] or ''}"
    return {
        "clean_id": cycle["clean_id"],
        "opened_at": when(cycle["opened_at"]),
        "completed_at": when(cycle["completed_at"]),
        "compliance": VERDICTS.get(cycle["compliance"], cycle["compliance"]),
        "override": override,
        "steps": "; ".join(
            f"{step_name(s['kind'])} {when(s['started_at'])}–{when(s['ended_at'])}"
            + (f" {s['operator']}" if s["operator"] else "")
            for s in steps
        ),
        "washers": "; ".join(
            f"{w['washer']} #{w['cycle_number']} {w['result']}" for w in cycle["washers"]
        ),
        "batches": "; ".join(sorted({s["ratio_number"] for s in steps if s["ratio_number"]})),
        "operators": "; ".join(sorted({s["operator"] for s in steps if s["operator"]})),
        "violations": "; ".join(f"{v['clause']} {v['message']}" for v in cycle["violations"]),
    }


def unlinked_cells(run: dict[str, Any], when: Callable[[str | None], str]) -> dict[str, str]:
    """A washer run no cycle claimed: said so in the cycle column, the run in its own."""
    return {
        "scope": run["scope"] or "",
        "clean_id": UNLINKED,
        "washers": f"{run['washer']} #{run['cycle_number']} {run['result']}"
        f" {when(run['started_at'])}–{when(run['ended_at'])}"
        + (f" {run['operator']}" if run["operator"] else ""),
        "operators": run["operator"] or "",
    }


def step_name(kind: str) -> str:
    """A step kind as the centre names it (清洗, 消毒 …)."""
    try:
        return STEP_NAMES[StepKind(kind)]
    except ValueError:
        return kind


def local(value: str | None, zone: tzinfo | None) -> str:
    """An ISO UTC time from the tables as a local wall time, to the second."""
    if not value:
        return ""
    return datetime.fromisoformat(value).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def to_csv(rows: list[dict[str, str]]) -> str:
    """CSV with the Chinese headings and a BOM, so that Excel opens it as UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([zh for _, zh, _ in COLUMNS])
    for row in rows:
        writer.writerow([_cell(row[key]) for key, _, _ in COLUMNS])
    return "\ufeff" + out.getvalue()


def _cell(value: str) -> str:
    # A cell a spreadsheet would run as a formula (=, +, -, @) is written as text.
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value
