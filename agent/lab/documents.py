"""What hospital systems post about lab work and result sharing (LIS, HIS doctor stations):
lab reports with their results, lab devices, QC runs, mutual-recognition and reminder/viewing
records, and the item catalogue. Our own neutral shapes (seed 001 names no field)."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from agent.inputs import BirthDate, Body, Moment

MAX_RESULTS = 500
MAX_CATALOGUE = 20_000


def _text(n: int, required: bool = False) -> Any:
    return Field(min_length=1 if required else 0, max_length=n)


Code = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[^\s]+$")]
Name = Annotated[str, _text(128, required=True)]
Text64 = Annotated[str, _text(64)]
Text128 = Annotated[str, _text(128)]
IdCard = Annotated[str, Field(pattern=r"^[0-9]{17}[0-9Xx]$")]
Sex = Literal["male", "female", "other", "unknown"]
Source = Literal["outpatient", "emergency", "inpatient", "physical_exam", "other"]


class Patient(Body):
    """The patient a lab report or record is about."""

    id: Code  # the hospital's patient id
    name: Name
    sex: Sex = "unknown"
    birth_date: BirthDate | None = None
    id_card_no: IdCard | None = None
    source: Source | None = None
    visit_no: Text64 = ""  # outpatient or inpatient number


class Result(Body):
    """One result item of a lab report."""

    item_code: Code
    item_name: Name
    value: Annotated[str, _text(64, required=True)]
    unit: Text64 = ""
    reference_range: Text64 = ""
    flag: Literal["normal", "high", "low", "abnormal", "critical"] = "normal"
    method: Text64 = ""
    device_code: Code | None = None


class LabReport(Body):
    """POST /api/v1/lab/reports: a lab report with its results (uploaded once audited)."""

    report_no: Code
    patient: Patient
    specimen_type: Annotated[str, _text(32, required=True)]
    item_code: Code  # the ordered test or panel
    item_name: Name
    requesting_dept: Text64 = ""
    requested_by: Text64 = ""
    sampled_at: Moment | None = None
    received_at: Moment | None = None
    reported_by: Text64 = ""
    reported_at: Moment
    audited_by: Text64 = ""
    audited_at: Moment | None = None  # absent: not audited yet, nothing is uploaded
    device_code: Code | None = None
    results: Annotated[list[Result], Field(min_length=1, max_length=MAX_RESULTS)]


class LabDevice(Body):
    """POST /api/v1/lab/devices: one lab instrument (master data, sent again when changed)."""

    device_code: Code
    name: Name
    model: Text64 = ""
    manufacturer: Text128 = ""
    serial_no: Text64 = ""
    dept: Text64 = ""
    status: Literal["in_use", "stopped", "retired"] = "in_use"
    installed_on: BirthDate | None = None


class QcRun(Body):
    """POST /api/v1/lab/qc: one QC measurement of one item on one device."""

    run_id: Code
    device_code: Code
    item_code: Code
    item_name: Name
    level: Annotated[str, _text(16, required=True)]  # the control material's level
    lot_no: Text64 = ""
    target: Annotated[str, _text(32)] = ""
    sd: Annotated[str, _text(32)] = ""
    value: Annotated[str, _text(32, required=True)]
    result: Literal["in_control", "warning", "out_of_control"]
    rule: Text64 = ""  # the Westgard rule broken, if any
    run_at: Moment
    operator: Text64 = ""


class Recognition(Body):
    """POST /api/v1/sharing/recognitions: a doctor accepted or refused an outside exam or lab
    result instead of repeating it (检查/检验互认)."""

    multiline = frozenset({"reason"})

    record_id: Code
    domain: Literal["exam", "lab"]
    patient: Patient
    other_org_code: Code  # the institution whose result it is
    other_report_no: Code
    item_code: Code
    item_name: Name
    decision: Literal["accepted", "refused"]
    reason: Annotated[str, _text(500)] = ""
    doctor: Annotated[str, _text(64, required=True)]
    dept: Text64 = ""
    decided_at: Moment


class Viewing(Body):
    """POST /api/v1/sharing/viewings: a doctor station reminded of, or viewed, a result."""

    record_id: Code
    kind: Literal["reminder", "viewing"]
    domain: Literal["exam", "lab"]
    patient: Patient
    other_org_code: Code | None = None
    other_report_no: Code | None = None
    doctor: Annotated[str, _text(64, required=True)]
    dept: Text64 = ""
    at: Moment


class CatalogueItem(Body):
    """One row of the item catalogue: a local exam or lab item and its platform code."""

    domain: Literal["exam", "lab"]
    local_code: Code
    local_name: Name
    platform_code: Code
    platform_name: Text128 = ""


CATALOGUE_COLUMNS = ("domain", "local_code", "local_name", "platform_code", "platform_name")


def read_catalogue(text: str) -> tuple[list[dict[str, str]], list[str]]:
    """The rows of a catalogue CSV (header: CATALOGUE_COLUMNS), and every problem by line."""
    try:
        rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    except csv.Error as err:
        return [], [f"not CSV: {err}"]
    if not rows or tuple(c.strip() for c in rows[0]) != CATALOGUE_COLUMNS:
        return [], [f"line 1: the header must be {','.join(CATALOGUE_COLUMNS)}"]
    if len(rows) - 1 > MAX_CATALOGUE:
        return [], [f"more than {MAX_CATALOGUE} items"]
    items: list[dict[str, str]] = []
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(CATALOGUE_COLUMNS):
            problems.append(f"line {number}: {len(row)} columns, {len(CATALOGUE_COLUMNS)} wanted")
            continue
        try:
            item = CatalogueItem.model_validate(
                dict(zip(CATALOGUE_COLUMNS, (c.strip() for c in row), strict=True))
            )
        except ValidationError as err:
            for problem in err.errors(include_url=False):
                where = ".".join(str(p) for p in problem["loc"])
                problems.append(f"line {number}: {where}: {problem['msg']}")
            continue
        if (item.domain, item.local_code) in seen:
            problems.append(f"line {number}: {item.domain} {item.local_code} listed twice")
        seen.add((item.domain, item.local_code))
        items.append(item.model_dump())
    if not items and not problems:
        problems.append("no item")
    return items, problems
