"""Seed 003 §3.2.3 request tables as data (kit Fields), checked alike by uplink and simulator."""

from __future__ import annotations

from dataclasses import replace

from agent.uplinks.kit.fields import Checks, Field, LengthUnit, Table, TimeFormat
from agent.uplinks.kit.fields import validate as validate_table

DATETIME = "%Y-%m-%d %H:%M:%S"  # the seed's YYYY-MM-DD HH24:MI:SS
DATE = "%Y-%m-%d"
# C(10) and C(19) are the seed's dates and date-times.
_FORMATS = {"date": TimeFormat(DATE, "a date"), "datetime": TimeFormat(DATETIME, "a date-time")}


def vc(size: int, required: bool = False) -> Field:
    """VC(n): text up to n."""
    return Field("", f"VC({size})", required)


def c(size: int, required: bool = False, choices: tuple[str, ...] = ()) -> Field:
    """C(n): text of exactly n; C(10) a date, C(19) a date-time."""
    formats = {10: "date", 19: "datetime"}
    return Field("", f"C({size})", required, choices=choices, format=formats.get(size, ""))


def n(size: int, required: bool = False, scale: int = 0) -> Field:
    """N(p[,s]): a number of p digits, s of them after the point."""
    return Field("", f"N({size},{scale})" if scale else f"N({size})", required)


def nested(kind: str, children: dict[str, Field], required: bool = False) -> Field:
    """An object or an array of objects, with its own table."""
    return Field("", kind, required, children=_named(children))


def _named(fields: dict[str, Field]) -> dict[str, Field]:
    return {name: replace(spec, name=name) for name, spec in fields.items()}


PATIENT_INFO: dict[str, Field] = _named({
    "sickId": vc(32, True), "cardNo": vc(32), "siCard": vc(32), "miCard": vc(32),
    "patientSource": vc(4), "inpatientNo": vc(32), "outPatientNo": vc(32), "bedno": vc(32),
    "name": vc(32, True), "sex": vc(4, True), "age": vc(16), "birthDate": c(10),
    "height": vc(16), "weight": vc(16), "nativePlace": vc(128), "nationality": vc(128),
    "nation": vc(16), "address": vc(256), "zipCode": vc(16), "phoneNumber": vc(16),
    "maritalStatus": c(1, choices=("0", "1")),
    "identity": nested("array", {"idType": vc(2), "idName": vc(32), "idNumber": vc(32)}),
    "degree": vc(32), "chargeType": c(1, choices=("0", "1", "2", "3", "4")),
    "patientMemo": vc(512),
})  # fmt: skip
EXAM_INFO: dict[str, Field] = _named({
    "applyNo": vc(32, True), "patientID": vc(32, True),
    "examStatus": Field("", "VC(2)", True, choices=("50", "60", "65", "70")),
    "examTime": c(19, True), "examClass": vc(32, True), "examSubClass": vc(32),
    "commonName": vc(32),
    "examItemList": nested("array", {
        "itemCode": vc(32), "itemName": vc(128, True), "itemCost": vc(32),
        "itemCharge": vc(32), "orderNo": vc(32),
    }),
    "examOrganList": nested("array", {"organName": vc(128, True)}),
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
})  # fmt: skip
REPORT_LIST: dict[str, Field] = _named({
    "reportNo": vc(32),
    "category": nested("array", {"caType": vc(32), "caCode": vc(32), "caName": vc(128)}),
    "description": vc(2000), "impression": vc(1000), "recommendation": vc(512),
    "abNormalFlag": c(1, choices=("0", "1")), "reporter": vc(32), "reportTime": c(19),
    "affirmReporter": vc(32), "affirmTime": c(19), "printTime": c(19),
    "reportImage": nested("array", {
        "rptImgType": vc(16), "rptImgPath": vc(128), "rptImgPos": vc(32), "rptImgDesc": vc(32),
        "sopInstanceUID": vc(256),
    }),
})  # fmt: skip
IMAGE_LIST: dict[str, Field] = _named({
    "imageType": vc(32), "imageCount": n(4), "modality": vc(4), "patientID": vc(32, True),
    "studyUID": vc(128, True), "accessionNo": vc(32), "storePath": vc(256),
    "storeCode": vc(32), "imageUrl": vc(512),
})  # fmt: skip
PUSH: dict[str, Field] = _named(
    {
        "examNo": vc(32, True),
        "hospitalCode": vc(32, True),
        "patientInfo": nested("object", PATIENT_INFO, required=True),
        "examInfo": nested("object", EXAM_INFO, required=True),
        "reportList": nested("object", REPORT_LIST),
        "imageList": nested("array", IMAGE_LIST),
    }
)
STATISTICS_ITEM: dict[str, Field] = _named(
    {
        "hospitalCode": vc(32, True),
        "examDate": c(10, True),
        "examClass": vc(32, True),
        "accordCount": n(4, True),
    }
)


def validate(fields: Table, value: object, unit: LengthUnit = "chars", path: str = "") -> list[str]:
    """Every way `value` breaks `fields`, each naming the field path, never the value."""
    checks = Checks(formats=_FORMATS, length_unit=unit, strays="the seed's table")
    return validate_table(fields, value, checks, path)
