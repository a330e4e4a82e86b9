"""The imaging domain's neutral exam record: what every platform's uplink maps from.

The record is a JSON object (kept in `im_exams.record`, carried by `exam.push` as `record`).
Keys are the domain's, not a platform's; an absent or empty key is unknown. Times are local wall
times as the hospital wrote them, ISO 8601 without a zone (`2026-12-07T09:30:00`); dates are
`YYYY-MM-DD`. Where a value is a national code list (ID document types), the code is kept.
docs/imaging.md ("The exam record") lists every key with the exam document field it comes from.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypedDict

Status = Literal["images_received", "preliminary", "returned", "final"]
Sex = Literal["male", "female", "other"]
PatientSource = Literal["outpatient", "emergency", "inpatient", "physical_exam", "other"]
ChargeType = Literal["insurance", "public", "rural_cooperative", "self_pay", "other"]
Result = Literal["negative", "positive"]


class Document(TypedDict, total=False):
    """One of the patient's ID documents; `type` is the national code (1 = resident ID card)."""

    type: str
    name: str
    number: str


class Patient(TypedDict, total=False):
    """The patient as the hospital knows them."""

    id: str  # the hospital's patient id (病人号)
    name: str
    sex: Sex
    birth_date: str
    age: str
    source: PatientSource
    card_no: str
    social_security_card: str
    medical_insurance_card: str
    inpatient_no: str
    outpatient_no: str
    bed_no: str
    height: str
    weight: str
    native_place: str
    nationality: str
    ethnicity: str
    address: str
    zip_code: str
    phone: str
    marital_status: Literal["unmarried", "married"]
    documents: list[Document]
    personal_status: str  # 身份, e.g. serviceman
    charge_type: ChargeType
    memo: str


class Item(TypedDict, total=False):
    """One ordered exam item; `refunded_at` once it was refunded or cancelled."""

    code: str
    name: str
    cost: str
    charge: str
    order_no: str
    refunded_at: str


class Specimen(TypedDict, total=False):
    """The specimen of a pathology exam."""

    number: str
    category: str
    sampled_at: str
    received_at: str
    fixative: str
    status: str


class Order(TypedDict, total=False):
    """What was asked for, by whom, and how it was performed."""

    exam_number: str  # 检查号 (CT000001), usually the images' PatientID
    exam_class: str
    exam_subclass: str
    common_name: str
    items: list[Item]
    body_parts: list[dict[Literal["name"], str]]
    device: str
    performing_dept_code: str
    performing_dept_name: str
    technician_code: str
    technician_name: str
    requesting_hospital_code: str
    requesting_hospital_name: str
    requesting_ward_code: str
    requesting_ward_name: str
    requesting_dept_code: str
    requesting_dept_name: str
    requesting_physician_code: str
    requesting_physician_name: str
    requested_at: str
    scheduled_at: str
    signs: str
    symptoms: str
    clinical_diagnosis: str
    clinical_diagnosis_at: str
    cost: str
    charge: str
    charged: Literal["unpaid", "paid"]
    memo: str
    specimen: Specimen


class Diagnosis(TypedDict, total=False):
    """A disease of the report (ICD)."""

    type: str
    code: str
    name: str


class ReportImage(TypedDict, total=False):
    """An image of the report (`type`: BMP, JPG, DICOM)."""

    type: str
    path: str
    position: str
    description: str
    sop_uid: str


class Report(TypedDict, total=False):
    """The report: findings, impression, who wrote and audited it, when."""

    report_no: str
    diagnoses: list[Diagnosis]
    findings: str
    impression: str
    recommendation: str
    result: Result
    written_by: str
    written_at: str
    audited_by: str
    audited_at: str
    printed_at: str
    images: list[ReportImage]


class ReportFile(TypedDict):
    """A file attached to the exam: `<sha256>.<pdf|jpg|png>` in the agent's exam-files folder."""

    name: str
    kind: Literal["report_pdf", "report_image"]
    size: int
    attached_at: str  # UTC, ISO 8601


class ExamRecord(TypedDict, total=False):
    """One exam: order, report, states and times (exam_no is always present)."""

    exam_no: str
    hospital_code: str  # the exam's hospital (several behind one front-end); absent: the uplink's
    apply_no: str
    accession: str
    study_uid: str
    status: Status
    registered_at: str
    exam_at: str
    cancelled_at: str
    patient: Patient
    order: Order
    report: Report
    modified_at: str  # on reading: when its report (or status) last changed
    files: list[ReportFile]  # on reading: what the local API stored for it


# The times an exam can be asked by (each an indexed column of the report store).
TimeField = Literal[
    "exam_at",
    "registered_at",
    "written_at",
    "audited_at",
    "refunded_at",
    "cancelled_at",
    "modified_at",
]


@dataclass(frozen=True, slots=True)
class ExamQueries:
    """The report store's read side, handed by the wiring to platforms that serve exams."""

    # (conn, field, start, end, limit): exams whose `field` is in [start, end], oldest first.
    between: Callable[[sqlite3.Connection, TimeField, str, str, int], list[ExamRecord]]
    # (conn, number): the exam with this exam number, else the latest with this accession.
    by_number: Callable[[sqlite3.Connection, str], ExamRecord | None]
