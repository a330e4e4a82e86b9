"""Seed 003 §3.2.3 request tables as data, checked alike by the uplink and the simulator."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

LengthUnit = Literal["chars", "utf8_bytes"]
DATETIME = "%Y-%m-%d %H:%M:%S"  # the seed's YYYY-MM-DD HH24:MI:SS
DATE = "%Y-%m-%d"
_DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")


@dataclass(frozen=True, slots=True)
class Spec:
    """One field: VC(n) text up to n, C(n) exactly n, N(p[,s]) number, or an object/array."""

    kind: Literal["VC", "C", "N", "object", "array"]
    size: int = 0
    required: bool = False
    scale: int = 0  # N(8,2): digits after the point
    choices: tuple[str, ...] = ()
    children: Mapping[str, Spec] = field(default_factory=dict)

    @property
    def seed_type(self) -> str:
        """As the seed writes it: VC(32), C(19), N(8,2), object, array."""
        if self.kind in ("object", "array"):
            return self.kind
        return f"{self.kind}({self.size}{f',{self.scale}' if self.scale else ''})"


def vc(size: int, required: bool = False) -> Spec:
    return Spec("VC", size, required)


def c(size: int, required: bool = False, choices: tuple[str, ...] = ()) -> Spec:
    return Spec("C", size, required, choices=choices)


def n(size: int, required: bool = False, scale: int = 0) -> Spec:
    return Spec("N", size, required, scale)


PATIENT_INFO: dict[str, Spec] = {
    "sickId": vc(32, True), "cardNo": vc(32), "siCard": vc(32), "miCard": vc(32),
    "patientSource": vc(4), "inpatientNo": vc(32), "outPatientNo": vc(32), "bedno": vc(32),
    "name": vc(32, True), "sex": vc(4, True), "age": vc(16), "birthDate": c(10),
    "height": vc(16), "weight": vc(16), "nativePlace": vc(128), "nationality": vc(128),
    "nation": vc(16), "address": vc(256), "zipCode": vc(16), "phoneNumber": vc(16),
    "maritalStatus": c(1, choices=("0", "1")),
    "identity": Spec("array", children={"idType": vc(2), "idName": vc(32), "idNumber": vc(32)}),
    "degree": vc(32), "chargeType": c(1, choices=("0", "1", "2", "3", "4")),
    "patientMemo": vc(512),
}  # fmt: skip
EXAM_INFO: dict[str, Spec] = {
    "applyNo": vc(32, True), "patientID": vc(32, True),
    "examStatus": Spec("VC", 2, True, choices=("50", "60", "65", "70")),
    "examTime": c(19, True), "examClass": vc(32, True), "examSubClass": vc(32),
    "commonName": vc(32),
    "examItemList": Spec("array", children={
        "itemCode": vc(32), "itemName": vc(128, True), "itemCost": vc(32),
        "itemCharge": vc(32), "orderNo": vc(32),
    }),
    "examOrganList": Spec("array", children={"organName": vc(128, True)}),
    "device": vc(128), "performDeptCode": vc(32), "performDeptName": vc(64),
    "technicanCode": vc(32), "technicanName": vc(32),
    "reqHospitalCode": vc(32, True), "reqHospitalName": vc(64, True),
    "reqWardCode": vc(32), "reqWardName": vc(64), "reqDeptCode": vc(32), "reqDeptName": vc(64),
    "reqPhysicianCode": vc(32), "reqPhysicianName": vc(32),
    "reqTime": c(19),  # listed twice in the seed (申请时间, 申请检查时间): one key in JSON
    "scheduledTime": c(19), "physSign": vc(512), "clinSymp": vc(512), "clinDiag": vc(512),
    "clinDiagTime": c(19), "cost": n(8, scale=2), "charge": n(8, scale=2),
    "chargeFlag": c(1, choices=("0", "1")), "examMemo": vc(512),
    "specimenNumber": vc(32), "specimenCategory": vc(20), "sampleTime": c(19),
    "specimenReceiveTime": c(19), "sampleFixativeName": vc(50), "specimenStatus": vc(20),
}  # fmt: skip
REPORT_LIST: dict[str, Spec] = {
    "reportNo": vc(32),
    "category": Spec("array", children={"caType": vc(32), "caCode": vc(32), "caName": vc(128)}),
    "description": vc(2000), "impression": vc(1000), "recommendation": vc(512),
    "abNormalFlag": c(1, choices=("0", "1")), "reporter": vc(32), "reportTime": c(19),
    "affirmReporter": vc(32), "affirmTime": c(19), "printTime": c(19),
    "reportImage": Spec("array", children={
        "rptImgType": vc(16), "rptImgPath": vc(128), "rptImgPos": vc(32), "rptImgDesc": vc(32),
        "sopInstanceUID": vc(256),
    }),
}  # fmt: skip
IMAGE_LIST: dict[str, Spec] = {
    "imageType": vc(32), "imageCount": n(4), "modality": vc(4), "patientID": vc(32, True),
    "studyUID": vc(128, True), "accessionNo": vc(32), "storePath": vc(256),
    "storeCode": vc(32), "imageUrl": vc(512),
}  # fmt: skip
PUSH: dict[str, Spec] = {
    "examNo": vc(32, True),
    "hospitalCode": vc(32, True),
    "patientInfo": Spec("object", required=True, children=PATIENT_INFO),
    "examInfo": Spec("object", required=True, children=EXAM_INFO),
    "reportList": Spec("object", children=REPORT_LIST),
    "imageList": Spec("array", children=IMAGE_LIST),
}
STATISTICS_ITEM: dict[str, Spec] = {
    "hospitalCode": vc(32, True),
    "examDate": c(10, True),
    "examClass": vc(32, True),
    "accordCount": n(4, True),
}


def is_empty(value: object) -> bool:
    """Absent for the seed: None, or a blank string."""
    return value is None or (isinstance(value, str) and not value.strip())


def validate(
    table: Mapping[str, Spec], value: object, unit: LengthUnit = "chars", path: str = ""
) -> list[str]:
    """Every way `value` breaks `table`, each naming the field path, never the value."""
    if not isinstance(value, Mapping):
        return [f"{path or 'body'}: not an object"]
    problems = [f"{path}{k}: not a field of the seed's table" for k in value if k not in table]
    for name, spec in table.items():
        item = value.get(name)
        where = f"{path}{name}"
        if is_empty(item) or (spec.kind == "array" and item == []):
            if spec.required:
                problems.append(f"{where}: required field is missing")
            continue
        problems += _check(spec, item, where, unit)
    return problems


def _check(spec: Spec, value: object, where: str, unit: LengthUnit) -> list[str]:
    if spec.kind == "object":
        return validate(spec.children, value, unit, f"{where}.")
    if spec.kind == "array":
        if not isinstance(value, list):
            return [f"{where}: not an array"]
        found: list[str] = []
        for index, item in enumerate(value):
            found += validate(spec.children, item, unit, f"{where}[{index}].")
        return found
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return [f"{where}: bad type {type(value).__name__} (expected {spec.seed_type})"]
    if spec.kind == "N":
        return _number(spec, value, where)
    if not isinstance(value, str):
        return [f"{where}: not text (expected {spec.seed_type})"]
    size = len(value.encode("utf-8")) if unit == "utf8_bytes" else len(value)
    what = "bytes" if unit == "utf8_bytes" else "characters"
    if spec.kind == "C" and spec.size in (10, 19):
        wanted = DATE if spec.size == 10 else DATETIME
        try:
            datetime.strptime(value, wanted)
        except ValueError:
            return [f"{where}: not {'a date' if spec.size == 10 else 'a date-time'} {wanted!r}"]
    if spec.kind == "C" and size != spec.size:
        return [f"{where}: {size} {what}, exactly {spec.size} required ({spec.seed_type})"]
    if size > spec.size:
        return [f"{where}: {size} {what}, at most {spec.size} allowed ({spec.seed_type})"]
    if spec.choices and value not in spec.choices:
        return [f"{where}: must be one of {', '.join(spec.choices)}"]
    return []


def _number(spec: Spec, value: str | int | float, where: str) -> list[str]:
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{where}: not a number ({spec.seed_type})"]
    if isinstance(value, float):
        text = format(value, "f").rstrip("0").rstrip(".")
    else:
        text = value.strip() if isinstance(value, str) else str(value)
    if not _DECIMAL.match(text):
        return [f"{where}: not a number ({spec.seed_type})"]
    whole, _, fraction = text.lstrip("-").partition(".")
    if len(fraction) > spec.scale:
        return [f"{where}: more than {spec.scale} decimals ({spec.seed_type})"]
    if len(whole.lstrip("0") or "0") > spec.size - spec.scale:
        return [f"{where}: more than {spec.size - spec.scale} digits ({spec.seed_type})"]
    return []
