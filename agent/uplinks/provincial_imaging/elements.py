"""Seed 003 §3.4.1.1 SynApplyInfo: the request's element table as data (L2207-3533), the order
document HIS posts (the XML's shape as JSON) checked against it, and the XML built from it.

Where the seed contradicts itself the default is documented in docs/platforms/remote_imaging.md
("Scenario 3"): lengths of `SickNo`/`ApplyNo` apply to the hospital's own number before the
`<医院ID>_` prefix; items are the example's child elements; `Charge`/`Cost` go as posted.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from agent.uplinks.kit.fields import Checks, Field, LengthUnit, TimeFormat, is_empty, render, table
from agent.uplinks.kit.fields import validate as validate_table

Action = Literal["INSERT", "UPDATE", "DELETE"]
ACTIONS: tuple[Action, ...] = ("INSERT", "UPDATE", "DELETE")
FORMATS = {
    "date": TimeFormat("%Y-%m-%d", "a date"),
    "DT": TimeFormat("%Y-%m-%d %H:%M:%S", "a time"),
}
# Elements whose XML carries a `code` attribute beside the text: {"code": …, "name": …} in JSON.
CODED = frozenset(
    {"PatientClass", "HospitalName", "PerformDept", "Technican", "ReqHospital", "ReqWard",
     "ReqDept", "ReqPhysician"}
)  # fmt: skip
PREFIXED = ("SickNo", "ApplyNo")  # carry "<医院ID>_" (L2262, L2441)


def _coded(name: str, text_type: str, required: bool, code_required: bool = False) -> Field:
    children = table([Field("code", "VC(32)", code_required), Field("name", text_type, True)])
    return Field(name, "object", required, children=children)


IDENTITY = table(
    [Field("Type", "VC(10)", True), Field("Name", "VC(20)", True), Field("Number", "VC(20)", True)]
)
PATIENT = table(
    [
        Field("SickNo", "VC(10)", True, "病人ID (without the prefix)"),
        Field("CardNo", "VC(20)"),
        Field("SiCard", "VC(20)"),
        Field("MiCard", "VC(20)"),
        Field("HealthCard", "VC(64)"),
        _coded("PatientClass", "VC(20)", True, code_required=True),
        Field("InPatientNo", "VC(20)"),
        Field("VisitID", "N(6)"),
        Field("BedNo", "VC(10)"),
        Field("OutPatientNo", "VC(20)"),
        Field("PatientName", "VC(20)", True),
        Field("Phoneticize", "VC(20)"),
        Field("BirthDate", "C(10)", True, format="date"),
        Field("Age", "VC(20)", True),
        Field("Height", "VC(10)"),
        Field("Weight", "VC(10)"),
        Field("NativePlace", "VC(200)"),
        Field("Nationality", "VC(30)"),
        Field("Sex", "VC(4)", True, choices=("男", "女", "其他")),
        Field("Nation", "VC(30)"),
        Field("Address", "VC(200)"),
        Field("ZipCode", "VC(6)"),
        Field("PhoneNumber", "VC(16)", True),
        Field("MaritalStatus", "VC(10)"),
        Field("Identity", "object", children=IDENTITY),
        Field("Degree", "VC(20)"),
        Field("ChargeType", "VC(20)"),
        Field("Memo", "VC(50)"),
        Field("MensesStatus", "C(1)", choices=("0", "1", "2", "3")),
        Field("LastMensesDate", "C(10)", format="date"),
    ]
)
# The table has one `Item` VARCHAR(100) with attributes; the example's child elements are sent.
# Item sizes the table leaves out (code, order number, count) are ours: VC(20), VC(20), N(6).
EXAM_ITEM = table(
    [
        Field("ItemCode", "VC(20)", True),
        Field("ItemName", "VC(100)", True),
        Field("ItemCost", "N(10,2)", True, "标准费用 (the table: 项目总费用)"),
        Field("ItemCharge", "N(10,2)", True, "应收费用 (the table: 项目单价)"),
        Field("OrderNo", "VC(20)", True),
        Field("Count", "N(6)", True),
    ]
)
ORGAN = table([Field("Organ", "VC(20)", True)])
SAMPLE = table(
    [
        Field("SampleNo", "N(4)", True),
        Field("BarcodeNo", "VC(20)"),
        Field("PackageNo", "VC(20)"),
        Field("SampleName", "VC(32)", True),
        Field("SamplePart", "VC(20)"),
        Field("SampleSource", "VC(20)"),
    ]
)
EXAM = table(
    [
        _coded("HospitalName", "VC(48)", False),
        Field("ApplyNo", "VC(16)", True, "申请单号 (without the prefix)"),
        Field("OutRegNo", "VC(20)"),
        Field("ExamTime", "VC(20)", format="DT"),
        Field("ExamClass", "VC(20)", True),
        Field("ExamSubClass", "VC(20)"),
        Field("PriorityOrder", "VC(4)", True),
        Field("ExamItems", "array", True, children=EXAM_ITEM),
        Field("ExamOrgan", "array", children=ORGAN),
        Field("Samples", "array", children=SAMPLE),
        Field("Device", "VC(20)"),
        Field("ExamGroup", "VC(20)"),
        _coded("PerformDept", "VC(20)", False),
        _coded("Technican", "VC(20)", False),
        _coded("ReqHospital", "VC(48)", True, code_required=True),
        _coded("ReqWard", "VC(30)", False),
        _coded("ReqDept", "VC(30)", True, code_required=True),
        _coded("ReqPhysician", "VC(20)", True, code_required=True),
        Field("ScheduledTime", "VC(20)", format="DT"),  # in the example only
        Field("ReqTime", "VC(20)", True, format="DT"),
        Field("PhysSign", "VC(600)"),
        Field("ClinSymp", "VC(600)"),
        Field("ClinDiag", "VC(600)"),
        Field("Revisit", "VC(300)"),
        Field("Charge", "N(10,2)", True, "应收费用"),
        Field("Cost", "N(10,2)", True, "实收费用"),
        Field("ChargeFlag", "VC(1)", True, choices=("0", "1")),
        Field("Memo", "VC(300)"),
        Field("ExamRecord", "VC(300)"),
        Field("RelevantDiag", "VC(300)"),
        Field("RelavantLabTest", "VC(300)"),
        Field("ExamMotive", "VC(30)"),
        Field("MedRecord", "VC(300)"),
        Field("TransTool", "VC(32)"),
        Field("IsCritical", "C(1)"),
        Field("Reserve1", "VC(50)"),
        Field("Reserve2", "VC(50)"),
        Field("Reserve3", "VC(50)"),
    ]
)
# 门诊病人为必填项 / 住院病人必须填 (by PatientClass code)
OUTPATIENT_REQUIRED = ("Patient.CardNo", "Patient.OutPatientNo", "Patient.Phoneticize",
                       "Exam.OutRegNo", "Exam.PerformDept")  # fmt: skip
INPATIENT_REQUIRED = ("Patient.InPatientNo",)
DELETE_REQUIRED = ("Patient.SickNo", "Exam.ApplyNo")  # a cancellation names the order only


@dataclass(frozen=True, slots=True)
class Rules:
    """How an order is checked and written: the seed's defaults, then the config's choices."""

    hospital_id: str = ""  # the `<医院ID>_` prefix of SickNo and ApplyNo ("" = none)
    length_unit: LengthUnit = "chars"
    prefixed_lengths: bool = False  # True: VC(10)/VC(16) apply to the prefixed value
    patient_class_rules: bool = True  # the 门诊/住院 conditional required elements


class OrderError(ValueError):
    """An order document the table refuses; `problems` name elements, never values."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def normalise(document: Any) -> dict[str, Any]:
    """The posted order with its action upper-cased (empty = INSERT) and organs as objects."""
    if not isinstance(document, Mapping):
        raise OrderError(["body: not an object"])
    order = dict(document)
    action = order.get("Action")
    order["Action"] = "INSERT" if is_empty(action) else str(action).strip().upper()
    exam = order.get("Exam")
    if isinstance(exam, Mapping) and isinstance(exam.get("ExamOrgan"), list):
        organs = [o if isinstance(o, Mapping) else {"Organ": o} for o in exam["ExamOrgan"]]
        order["Exam"] = {**exam, "ExamOrgan": organs}
    return order


def check(order: Mapping[str, Any], rules: Rules) -> list[str]:
    """Every way a normalised order breaks the table (element paths, never values)."""
    problems = [f"{k}: not an element of the order" for k in order if k not in _TOP]
    action = order.get("Action")
    if action not in ACTIONS:
        return [*problems, "Action: must be one of INSERT, UPDATE, DELETE"]
    checks = Checks(FORMATS, rules.length_unit, integers_as_text=True, strays="the order")
    delete = action == "DELETE"
    for part, fields in (("Patient", PATIENT), ("Exam", EXAM)):
        value = order.get(part)
        if not isinstance(value, Mapping):
            problems.append(f"{part}: required, an object")
            continue
        used = {k: _optional(f) for k, f in fields.items()} if delete else fields
        problems += validate_table(used, value, checks, f"{part}.")
    if problems:
        return problems
    return [*_conditional(order, rules, delete), *_prefixed_lengths(order, rules)]


def _optional(spec: Field) -> Field:
    if spec.name in {p.split(".")[1] for p in DELETE_REQUIRED}:
        return spec
    return Field(spec.name, spec.seed_type, False, spec.description, spec.choices, spec.format,
                 spec.children)  # fmt: skip


def _conditional(order: Mapping[str, Any], rules: Rules, delete: bool) -> list[str]:
    if delete or not rules.patient_class_rules:
        return []
    kind = str(order["Patient"]["PatientClass"].get("code", "")).upper()
    wanted = OUTPATIENT_REQUIRED if kind == "OU" else INPATIENT_REQUIRED if kind == "IN" else ()
    missing = [path for path in wanted if is_empty(_at(order, path))]
    return [f"{path}: required for PatientClass {kind}" for path in missing]


def _prefixed_lengths(order: Mapping[str, Any], rules: Rules) -> list[str]:
    if not rules.prefixed_lengths:
        return []
    found = []
    for path, limit in (("Patient.SickNo", 10), ("Exam.ApplyNo", 16)):
        value = prefixed(str(_at(order, path)), rules.hospital_id)
        if len(value) > limit:
            found.append(f"{path}: {len(value)} characters with the prefix, at most {limit}")
    return found


def _at(order: Mapping[str, Any], path: str) -> Any:
    part, name = path.split(".")
    return order.get(part, {}).get(name)


def prefixed(value: str, hospital_id: str) -> str:
    """`value` with the `<医院ID>_` prefix, unless it has it already (or there is none)."""
    if not hospital_id or value.startswith(f"{hospital_id}_"):
        return value
    return f"{hospital_id}_{value}"


def apply_no(order: Mapping[str, Any], rules: Rules) -> str:
    """The order's ApplyNo as the platform knows it (prefixed)."""
    return prefixed(str(_at(order, "Exam.ApplyNo")), rules.hospital_id)


def to_xml(order: Mapping[str, Any], rules: Rules, application: str, license_: str) -> str:
    """The request's XmlDocument (UTF-8 declaration included) of a checked order."""
    root = ET.Element("XmlDocument")
    header = ET.SubElement(root, "Header")
    for name, value in (("Application", application), ("License", license_)):
        ET.SubElement(header, name).text = value
    ET.SubElement(header, "Action").text = str(order["Action"])
    for part, fields in (("Patient", PATIENT), ("Exam", EXAM)):
        values = dict(order.get(part) or {})
        for name in PREFIXED:
            if not is_empty(values.get(name)):
                values[name] = prefixed(render(values[name]), rules.hospital_id)
        _write(ET.SubElement(root, part), fields, values)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}'


def _write(parent: ET.Element, fields: Mapping[str, Field], values: Mapping[str, Any]) -> None:
    for name, spec in fields.items():
        value: Any = values.get(name)
        if is_empty(value) or value == []:
            continue
        if name in CODED:
            node = ET.SubElement(parent, name)
            if not is_empty(value.get("code")):
                node.set("code", render(value["code"]))
            node.text = render(value["name"])
        elif spec.kind == "object":
            _write(ET.SubElement(parent, name), spec.children, value)
        elif spec.kind == "array":
            container = ET.SubElement(parent, name)
            for item in value:
                if name == "ExamOrgan":
                    ET.SubElement(container, "Organ").text = render(item["Organ"])
                    continue
                child = "ExamItem" if name == "ExamItems" else "SampleInfo"
                _write(ET.SubElement(container, child), spec.children, item)
        else:
            ET.SubElement(parent, name).text = render(value)


def from_xml(text: str) -> dict[str, Any]:
    """The order document of a SynApplyInfo XmlDocument (the simulator's reading)."""
    root = ET.fromstring(text)  # noqa: S314 - the simulator reads the agent's own requests
    header = root.find("Header")
    order: dict[str, Any] = {"Action": header.findtext("Action") if header is not None else None}
    for part, fields in (("Patient", PATIENT), ("Exam", EXAM)):
        node = root.find(part)
        if node is not None:
            order[part] = _read(node, fields)
    return order


def _read(node: ET.Element, fields: Mapping[str, Field]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for child in node:
        spec = fields.get(child.tag)
        if spec is None:
            values[child.tag] = child.text
        elif child.tag in CODED:
            values[child.tag] = {"code": child.get("code"), "name": child.text}
        elif spec.kind == "object":
            values[child.tag] = _read(child, spec.children)
        elif spec.kind == "array":
            if child.tag == "ExamOrgan":
                values[child.tag] = [{"Organ": o.text} for o in child]
            else:
                values[child.tag] = [_read(item, spec.children) for item in child]
        else:
            values[child.tag] = child.text
    return values


def header_of(text: str) -> dict[str, str]:
    """The Header's Application, License and Action of a SynApplyInfo XmlDocument."""
    root = ET.fromstring(text)  # noqa: S314 - the simulator reads the agent's own requests
    header = root.find("Header")
    if header is None:
        return {}
    return {child.tag: (child.text or "").strip() for child in header}


_TOP = frozenset({"Action", "Patient", "Exam"})
