"""The neutral exam record: made from the posted document, mapped back to seed 003 unchanged."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import BaseModel

from agent.imaging.exam_document import Exam, exam_payload
from agent.imaging.exam_record import exam_record
from agent.uplinks.remote_imaging import codec
from tests.unit.test_remote_imaging_codec import config_for

T = "2026-12-01 09:30:00"
EVERY_FIELD: dict[str, Any] = {
    "examNo": "E1",
    "hospitalCode": "H2",
    "studyUID": "1.2.3",
    "accessionNo": "ACC1",
    "patientInfo": {
        "sickId": "S1", "cardNo": "C1", "siCard": "SI1", "miCard": "MI1", "patientSource": "住院",
        "inpatientNo": "IP1", "outPatientNo": "OP1", "bedno": "12", "name": "张三", "sex": "女",
        "age": "45岁", "birthDate": "1980-02-03", "height": "170", "weight": "60",
        "nativePlace": "浙江杭州", "nationality": "中国", "nation": "汉族", "address": "某路1号",
        "zipCode": "310000", "phoneNumber": "13800000000", "maritalStatus": "1",
        "identity": [{"idType": "1", "idName": "居民身份证", "idNumber": "110101198002030000"}],
        "degree": "军人", "chargeType": "2", "patientMemo": "过敏史\n青霉素",
    },
    "examInfo": {
        "applyNo": "A1", "patientID": "CT000001", "examStatus": "65", "examTime": T,
        "examClass": "CT", "examSubClass": "增强", "commonName": "胸部CT",
        "examItemList": [
            {"itemCode": "I1", "itemName": "胸部CT平扫", "itemCost": "200", "itemCharge": "180",
             "orderNo": "O1", "refundTime": "2026-12-02 10:00:00"},
            {"itemName": "腹部CT"},
        ],
        "examOrganList": [{"organName": "胸部"}, {"organName": "腹部"}],
        "device": "CT-1", "performDeptCode": "D1", "performDeptName": "放射科",
        "technicanCode": "T1", "technicanName": "李技师",
        "reqHospitalCode": "H9", "reqHospitalName": "县医院",
        "reqWardCode": "W1", "reqWardName": "三病区", "reqDeptCode": "RD1",
        "reqDeptName": "呼吸科", "reqPhysicianCode": "P1", "reqPhysicianName": "王医生",
        "reqTime": "2026-12-01 08:00:00", "scheduledTime": "2026-12-01 09:00:00",
        "physSign": "体征", "clinSymp": "咳嗽", "clinDiag": "肺炎?",
        "clinDiagTime": "2026-12-01 07:50:00", "cost": "200.00", "charge": "180.5",
        "chargeFlag": "1", "examMemo": "备注", "specimenNumber": "SP1",
        "specimenCategory": "组织", "sampleTime": "2026-12-01 09:40:00",
        "specimenReceiveTime": "2026-12-01 10:00:00", "sampleFixativeName": "福尔马林",
        "specimenStatus": "合格", "registerTime": "2026-12-01 08:10:00",
        "cancelTime": "2026-12-03 08:00:00",
    },
    "reportList": {
        "reportNo": "R1",
        "category": [{"caType": "ICD10", "caCode": "J18", "caName": "肺炎"}],
        "description": "右下肺斑片影", "impression": "右下肺炎", "recommendation": "复查",
        "abNormalFlag": "1", "reporter": "赵医生", "reportTime": "2026-12-01 11:00:00",
        "affirmReporter": "钱主任", "affirmTime": "2026-12-01 12:00:00",
        "printTime": "2026-12-01 12:30:00",
        "reportImage": [
            {"rptImgType": "JPG", "rptImgPath": "/r/1.jpg", "rptImgPos": "1",
             "rptImgDesc": "右下肺", "sopInstanceUID": "1.2.3.4"},
        ],
    },
}  # fmt: skip
AGENT_ONLY = {"registerTime", "cancelTime", "refundTime"}  # not seed 003 fields


def fields_of(model: type[BaseModel]) -> set[str]:
    """Every field path of a model, nested models included."""
    found = set()
    for name, info in model.model_fields.items():
        found.add(name)
        for arg in _types(info.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                found |= {f"{name}.{child}" for child in fields_of(arg)}
    return found


def _types(annotation: Any) -> list[Any]:
    found, args = [annotation], getattr(annotation, "__args__", ())
    for arg in args:
        found += _types(arg)
    return found


def paths_of(value: Any, prefix: str = "") -> set[str]:
    found = set()
    for key, child in value.items():
        found.add(prefix + key)
        for element in child if isinstance(child, list) else [child]:
            if isinstance(element, dict):
                found |= paths_of(element, f"{prefix}{key}.")
    return found


def test_the_every_field_document_has_every_field_and_is_valid():
    assert paths_of(EVERY_FIELD) == fields_of(Exam)
    assert exam_payload(Exam.model_validate(EVERY_FIELD)) == EVERY_FIELD


def test_the_record_has_the_domain_names_codes_translated_and_iso_times():
    record = exam_record(EVERY_FIELD)
    assert record["status"] == "returned" and record["exam_at"] == "2026-12-01T09:30:00"
    assert record["registered_at"] == "2026-12-01T08:10:00"
    assert record["cancelled_at"] == "2026-12-03T08:00:00"
    assert record["patient"]["sex"] == "female" and record["patient"]["source"] == "inpatient"
    assert record["patient"]["charge_type"] == "rural_cooperative"
    assert record["patient"]["documents"] == [
        {"type": "1", "name": "居民身份证", "number": "110101198002030000"}
    ]
    assert record["order"]["items"][0]["refunded_at"] == "2026-12-02T10:00:00"
    assert record["order"]["specimen"]["fixative"] == "福尔马林"
    assert record["report"]["result"] == "positive"
    assert record["report"]["findings"] == "右下肺斑片影"
    assert (record["report"]["written_by"], record["report"]["audited_by"]) == ("赵医生", "钱主任")
    assert "examNo" not in record and "patientInfo" not in record
    assert record["hospital_code"] == "H2"
    assert record["order"]["requesting_hospital_code"] == "H9"


def test_an_exam_names_its_hospital_or_is_the_uplink_s():
    study = {"study_uid": "1.2.3", "patient_id": "CT000001", "accession": "ACC1"}
    document = copy.deepcopy(EVERY_FIELD)
    pushed = {"record": exam_record(document), "study": study}
    body, problems = codec.build_push(pushed, config_for())
    assert (body["hospitalCode"], body["examInfo"]["reqHospitalCode"], problems) == ("H2", "H9", [])
    del document["hospitalCode"], document["examInfo"]["reqHospitalCode"]
    body, _ = codec.build_push({"record": exam_record(document), "study": study}, config_for())
    assert body["hospitalCode"] == body["examInfo"]["reqHospitalCode"] == config_for().hospital_code
    _, problems = codec.build_push(
        {"record": exam_record(EVERY_FIELD), "study": study}, config_for(hospital_codes=["H1"])
    )
    assert problems == ["hospitalCode: not one of this uplink's hospital_codes"]


def without_agent_fields(document: dict[str, Any]) -> dict[str, Any]:
    trimmed = copy.deepcopy(document)
    for name in AGENT_ONLY:
        trimmed["examInfo"].pop(name, None)
    for item in trimmed["examInfo"]["examItemList"]:
        item.pop("refundTime", None)
    return trimmed


@pytest.mark.parametrize(
    "change",
    [
        lambda d: None,
        lambda d: d.pop("reportList"),
        lambda d: d["patientInfo"].update(sex="男", patientSource="体检", chargeType="0"),
        lambda d: d["patientInfo"].update(maritalStatus="0", sex="其他", patientSource="急诊"),
        lambda d: d["examInfo"].update(examStatus="50", chargeFlag="0"),
        lambda d: d["reportList"].update(abNormalFlag="0"),
        lambda d: d["patientInfo"].update(patientSource="门诊", chargeType="3"),
        lambda d: d["patientInfo"].update(patientSource="其他", chargeType="4"),
        lambda d: d["patientInfo"].update(chargeType="1") or d["examInfo"].update(examStatus="60"),
        lambda d: d["examInfo"].update(examStatus="70"),
    ],
)
def test_remote_imaging_sends_from_the_record_what_it_sent_from_the_document(change):
    """Every seed field and dictionary code: record → seed 003 gives the document's push."""
    document = copy.deepcopy(EVERY_FIELD)
    change(document)
    config = config_for()
    study = {"study_uid": "1.2.3", "patient_id": "CT000001", "accession": "ACC1"}
    from_record = codec.build_push({"record": exam_record(document), "study": study}, config)
    as_posted = codec.build_push({"exam": without_agent_fields(document), "study": study}, config)
    assert from_record == as_posted
    assert from_record[1] == []  # a valid push


def test_a_record_value_without_a_seed_code_is_named_not_sent():
    record = exam_record(EVERY_FIELD)
    record["patient"]["sex"] = "unknown"  # type: ignore[typeddict-item]
    body, problems = codec.build_push({"record": record}, config_for())
    assert "patientInfo.sex: patient.sex has no translation" in problems
    assert "sex" not in body["patientInfo"]
