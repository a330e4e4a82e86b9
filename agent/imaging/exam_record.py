"""The exam document as posted (v1, seed 003's names) → the neutral exam record (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from agent.vocabulary.exams import ExamRecord

# (document key, record path, how): how is "" (as is), "time" (written as ISO 8601), a list rule
# table (each element), or a dictionary (document code → record value).
How = str | tuple["Rule", ...] | Mapping[str, str]
Rule = tuple[str, str, How]

TIME = "time"
SEX = {"男": "male", "女": "female", "其他": "other"}
SOURCE = {
    "门诊": "outpatient",
    "急诊": "emergency",
    "住院": "inpatient",
    "体检": "physical_exam",
    "其他": "other",
}
CHARGE_TYPE = {
    "0": "insurance",
    "1": "public",
    "2": "rural_cooperative",
    "3": "self_pay",
    "4": "other",
}
STATUS = {"50": "images_received", "60": "preliminary", "65": "returned", "70": "final"}

PATIENT: tuple[Rule, ...] = (
    ("sickId", "id", ""),
    ("cardNo", "card_no", ""),
    ("siCard", "social_security_card", ""),
    ("miCard", "medical_insurance_card", ""),
    ("patientSource", "source", SOURCE),
    ("inpatientNo", "inpatient_no", ""),
    ("outPatientNo", "outpatient_no", ""),
    ("bedno", "bed_no", ""),
    ("name", "name", ""),
    ("sex", "sex", SEX),
    ("age", "age", ""),
    ("birthDate", "birth_date", ""),
    ("height", "height", ""),
    ("weight", "weight", ""),
    ("nativePlace", "native_place", ""),
    ("nationality", "nationality", ""),
    ("nation", "ethnicity", ""),
    ("address", "address", ""),
    ("zipCode", "zip_code", ""),
    ("phoneNumber", "phone", ""),
    ("maritalStatus", "marital_status", {"0": "unmarried", "1": "married"}),
    (
        "identity",
        "documents",
        (("idType", "type", ""), ("idName", "name", ""), ("idNumber", "number", "")),
    ),
    ("degree", "personal_status", ""),
    ("chargeType", "charge_type", CHARGE_TYPE),
    ("patientMemo", "memo", ""),
)
ITEM: tuple[Rule, ...] = (
    ("itemCode", "code", ""),
    ("itemName", "name", ""),
    ("itemCost", "cost", ""),
    ("itemCharge", "charge", ""),
    ("orderNo", "order_no", ""),
    ("refundTime", "refunded_at", TIME),
)
EXAM_INFO: tuple[Rule, ...] = (
    ("applyNo", "apply_no", ""),
    ("examStatus", "status", STATUS),
    ("examTime", "exam_at", TIME),
    ("registerTime", "registered_at", TIME),
    ("cancelTime", "cancelled_at", TIME),
    ("patientID", "order.exam_number", ""),
    ("examClass", "order.exam_class", ""),
    ("examSubClass", "order.exam_subclass", ""),
    ("commonName", "order.common_name", ""),
    ("examItemList", "order.items", ITEM),
    ("examOrganList", "order.body_parts", (("organName", "name", ""),)),
    ("device", "order.device", ""),
    ("performDeptCode", "order.performing_dept_code", ""),
    ("performDeptName", "order.performing_dept_name", ""),
    ("technicanCode", "order.technician_code", ""),
    ("technicanName", "order.technician_name", ""),
    ("reqHospitalCode", "order.requesting_hospital_code", ""),
    ("reqHospitalName", "order.requesting_hospital_name", ""),
    ("reqWardCode", "order.requesting_ward_code", ""),
    ("reqWardName", "order.requesting_ward_name", ""),
    ("reqDeptCode", "order.requesting_dept_code", ""),
    ("reqDeptName", "order.requesting_dept_name", ""),
    ("reqPhysicianCode", "order.requesting_physician_code", ""),
    ("reqPhysicianName", "order.requesting_physician_name", ""),
    ("reqTime", "order.requested_at", TIME),
    ("scheduledTime", "order.scheduled_at", TIME),
    ("physSign", "order.signs", ""),
    ("clinSymp", "order.symptoms", ""),
    ("clinDiag", "order.clinical_diagnosis", ""),
    ("clinDiagTime", "order.clinical_diagnosis_at", TIME),
    ("cost", "order.cost", ""),
    ("charge", "order.charge", ""),
    ("chargeFlag", "order.charged", {"0": "unpaid", "1": "paid"}),
    ("examMemo", "order.memo", ""),
    ("specimenNumber", "order.specimen.number", ""),
    ("specimenCategory", "order.specimen.category", ""),
    ("sampleTime", "order.specimen.sampled_at", TIME),
    ("specimenReceiveTime", "order.specimen.received_at", TIME),
    ("sampleFixativeName", "order.specimen.fixative", ""),
    ("specimenStatus", "order.specimen.status", ""),
)
REPORT: tuple[Rule, ...] = (
    ("reportNo", "report_no", ""),
    (
        "category",
        "diagnoses",
        (("caType", "type", ""), ("caCode", "code", ""), ("caName", "name", "")),
    ),
    ("description", "findings", ""),
    ("impression", "impression", ""),
    ("recommendation", "recommendation", ""),
    ("abNormalFlag", "result", {"0": "negative", "1": "positive"}),
    ("reporter", "written_by", ""),
    ("reportTime", "written_at", TIME),
    ("affirmReporter", "audited_by", ""),
    ("affirmTime", "audited_at", TIME),
    ("printTime", "printed_at", TIME),
    (
        "reportImage",
        "images",
        (
            ("rptImgType", "type", ""),
            ("rptImgPath", "path", ""),
            ("rptImgPos", "position", ""),
            ("rptImgDesc", "description", ""),
            ("sopInstanceUID", "sop_uid", ""),
        ),
    ),
)
DOCUMENT: tuple[Rule, ...] = (
    ("examNo", "exam_no", ""),
    ("hospitalCode", "hospital_code", ""),
    ("accessionNo", "accession", ""),
    ("studyUID", "study_uid", ""),
)
PARTS = (
    ("patientInfo", "patient.", PATIENT),
    ("examInfo", "", EXAM_INFO),
    ("reportList", "report.", REPORT),
)


def exam_record(document: Mapping[str, Any]) -> ExamRecord:
    """The neutral record of a validated exam document (its absent fields stay absent)."""
    record: dict[str, Any] = {}
    _convert(DOCUMENT, document, record, "")
    for key, prefix, rules in PARTS:
        part = document.get(key)
        if isinstance(part, Mapping):
            _convert(rules, part, record, prefix)
    return cast(ExamRecord, record)


def _convert(
    rules: tuple[Rule, ...], source: Mapping[str, Any], into: dict[str, Any], prefix: str
) -> None:
    for key, path, how in rules:
        value = source.get(key)
        if value is None:
            continue
        if isinstance(how, tuple):
            value = [_element(how, v) for v in value]
        elif how == TIME:
            value = str(value).replace(" ", "T", 1)
        elif isinstance(how, Mapping):
            value = how.get(str(value), value)  # its model allows no other; else the map says so
        _put(into, prefix + path, value)


def _element(rules: tuple[Rule, ...], source: Mapping[str, Any]) -> dict[str, Any]:
    element: dict[str, Any] = {}
    _convert(rules, source, element, "")
    return element


def _put(into: dict[str, Any], path: str, value: Any) -> None:
    *parents, name = path.split(".")
    for parent in parents:
        into = into.setdefault(parent, {})
    into[name] = value
