"""Seed 003 §3.4.1.1: the SynApplyInfo element table applied to the order HIS posts, the XML
written from it, and the seed's contradictions resolved as documented."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agent.uplinks.provincial_imaging import elements, soap
from agent.uplinks.provincial_imaging.elements import Rules

RULES = Rules(hospital_id="7173")


def seed_order(**changes: Any) -> dict[str, Any]:
    """The seed's example request (L2213-2698) as the JSON HIS posts."""
    order: dict[str, Any] = {
        "Action": "INSERT",
        "Patient": {
            "SickNo": "C0001", "CardNo": "C0001", "SiCard": "社保号", "MiCard": "医保号",
            "HealthCard": "健康卡号", "PatientClass": {"code": "IN", "name": "住院"},
            "InPatientNo": "I000001", "VisitID": 2, "BedNo": "加15", "PatientName": "肖萍",
            "Phoneticize": "xiaoping", "BirthDate": "1980-01-01", "Age": "7岁", "Height": "170",
            "Weight": "60", "NativePlace": "广东省东莞市", "Nationality": "中国", "Sex": "男",
            "Nation": "汉族", "Address": "广东省东莞市和平路115号", "ZipCode": "510000",
            "PhoneNumber": "13678938484", "MaritalStatus": "未婚",
            "Identity": {"Type": "ID", "Name": "居民身份证", "Number": "440786198001012839"},
            "Degree": "军人", "ChargeType": "免费", "Memo": "没有家族病史", "MensesStatus": "0",
        },
        "Exam": {
            "HospitalName": {"code": "350006", "name": "福建省立医院"}, "ApplyNo": "00000001",
            "OutRegNo": "001", "ExamTime": "2007-07-03 10:54:32", "ExamClass": "CT",
            "ExamSubClass": "脊椎", "PriorityOrder": "优先",
            "ExamItems": [
                {"ItemCode": "001", "ItemName": "肺部检查项目", "ItemCost": 153.45,
                 "ItemCharge": 153.45, "OrderNo": "123456", "Count": 1},
                {"ItemCode": "002", "ItemName": "脊椎检查项目", "ItemCost": "123.45",
                 "ItemCharge": "123.45", "OrderNo": "123457", "Count": "1"},
            ],
            "ExamOrgan": ["脊椎", "肺部"],
            "Device": "320排CT", "ExamGroup": "检查1组",
            "PerformDept": {"code": "0009", "name": "放射科"},
            "Technican": {"code": "工号", "name": "技师名称"},
            "ReqHospital": {"code": "350006", "name": "福建省立医院"},
            "ReqWard": {"code": "病区代码", "name": "病区名称"},
            "ReqDept": {"code": "0006", "name": "呼吸科"},
            "ReqPhysician": {"code": "C939", "name": "申请人名称"},
            "ScheduledTime": "2007-07-03 10:54:32", "ReqTime": "2007-07-03 10:54:32",
            "PhysSign": "正常体征", "ClinSymp": "胸闷", "ClinDiag": "正常", "Revisit": "没随访",
            "Charge": 276.45, "Cost": 276.45, "ChargeFlag": "0", "Memo": "备注",
            "ExamRecord": "检查记录",
        },
    }  # fmt: skip
    for path, value in changes.items():
        part, name = path.split("__")
        if value is None:
            order[part].pop(name, None)
        else:
            order[part][name] = value
    return order


def problems(order: dict[str, Any], rules: Rules = RULES) -> list[str]:
    return elements.check(elements.normalise(order), rules)


def test_the_seeds_example_passes_and_round_trips_through_the_xml():
    order = elements.normalise(seed_order())
    assert elements.check(order, RULES) == []
    text = elements.to_xml(order, RULES, "HIS", "F9BDEFC9EDD6426E57E9DFEFE3A74FA2")
    assert elements.header_of(text) == {
        "Application": "HIS", "License": "F9BDEFC9EDD6426E57E9DFEFE3A74FA2", "Action": "INSERT"
    }  # fmt: skip
    back = elements.from_xml(text)
    assert back["Patient"]["SickNo"] == "7173_C0001"  # 加医院ID前缀有下划线
    assert back["Exam"]["ApplyNo"] == "7173_00000001"
    assert back["Exam"]["ReqDept"] == {"code": "0006", "name": "呼吸科"}
    assert back["Exam"]["ExamOrgan"] == [{"Organ": "脊椎"}, {"Organ": "肺部"}]
    assert back["Exam"]["ExamItems"][1]["ItemCost"] == "123.45"
    assert "<ExamItems><ExamItem><ItemCode>001</ItemCode>" in text


def test_an_empty_action_is_insert_and_another_is_refused():
    assert elements.normalise(seed_order() | {"Action": ""})["Action"] == "INSERT"
    assert problems(seed_order() | {"Action": "MERGE"}) == [
        "Action: must be one of INSERT, UPDATE, DELETE"
    ]


def test_the_tables_lengths_required_elements_and_formats_are_named_never_the_values():
    order = seed_order(
        Patient__PatientName="名" * 21,
        Patient__BirthDate="1980/01/01",
        Patient__PhoneNumber=None,
        Exam__ReqTime=None,
        Exam__Charge="12345678901.5",
        Exam__ChargeFlag="2",
    )
    order["Exam"]["ReqDept"] = {"name": "呼吸科"}
    found = problems(order)
    assert found == [
        "Patient.PatientName: 21 characters, at most 20 allowed (VC(20))",
        "Patient.BirthDate: not a date '%Y-%m-%d'",
        "Patient.PhoneNumber: required field is missing",
        "Exam.ReqDept.code: required field is missing",
        "Exam.ReqTime: required field is missing",
        "Exam.Charge: more than 8 digits (N(10,2))",
        "Exam.ChargeFlag: must be one of 0, 1",
    ]
    assert not any("名名" in p for p in found)


def test_outpatients_need_card_outpatient_number_phoneticize_registration_and_department():
    order = seed_order(Patient__PatientClass={"code": "OU", "name": "门诊"}, Patient__CardNo=None)
    for path in (
        "Patient__OutPatientNo",
        "Patient__Phoneticize",
        "Exam__OutRegNo",
        "Exam__PerformDept",
    ):
        part, name = path.split("__")
        order[part].pop(name, None)
    assert problems(order) == [
        "Patient.CardNo: required for PatientClass OU",
        "Patient.OutPatientNo: required for PatientClass OU",
        "Patient.Phoneticize: required for PatientClass OU",
        "Exam.OutRegNo: required for PatientClass OU",
        "Exam.PerformDept: required for PatientClass OU",
    ]
    assert problems(order, Rules(hospital_id="7173", patient_class_rules=False)) == []
    inpatient = seed_order(Patient__InPatientNo=None)
    assert problems(inpatient) == ["Patient.InPatientNo: required for PatientClass IN"]


def test_a_delete_names_the_order_only():
    cancel = {"Action": "DELETE", "Patient": {"SickNo": "C0001"}, "Exam": {"ApplyNo": "00000001"}}
    assert problems(cancel) == []
    assert problems({**cancel, "Exam": {}}) == ["Exam.ApplyNo: required field is missing"]


def test_prefixed_ids_are_measured_before_the_prefix_unless_configured():
    order = seed_order(Patient__SickNo="C000000001")  # 10: the table's VARCHAR(10)
    assert problems(order) == []
    strict = Rules(hospital_id="7173", prefixed_lengths=True)
    assert problems(order, strict) == ["Patient.SickNo: 15 characters with the prefix, at most 10"]
    assert elements.prefixed("7173_C1", "7173") == "7173_C1"  # already prefixed: kept
    assert elements.prefixed("C1", "") == "C1"


def test_the_seeds_own_last_menses_example_zero_is_not_a_date():
    assert problems(seed_order(Patient__LastMensesDate="0")) == [
        "Patient.LastMensesDate: not a date '%Y-%m-%d'"
    ]


def test_unknown_elements_are_refused_by_name():
    order = seed_order(Exam__Colour="red")
    assert problems(order) == ["Exam.Colour: not a field of the order"]
    assert problems(seed_order() | {"Extra": 1}) == ["Extra: not an element of the order"]


def test_the_soap_client_wraps_the_document_and_reads_the_response_code():
    client = soap.SoapClient(
        "SynApplyInfo", soap.wsdl(*soap.APPLY, "http://service.ylz.com", "http://h/s"), None
    )
    body, headers = client.request("<XmlDocument>肖萍</XmlDocument>")
    assert headers["Content-Type"].startswith("text/xml")
    assert soap.argument(body, "SynApplyInfo") == "<XmlDocument>肖萍</XmlDocument>"
    answer = soap.response("SynApplyInfo", soap.result_xml("-88", "已登记"), "http://x")
    assert soap.read_result(client.answer(200, answer, "text/xml")) == ("-88", "已登记")
    with pytest.raises(soap.SoapError) as fault:
        client.answer(500, soap.fault("no such operation"), "text/xml")
    assert fault.value.fault
    with pytest.raises(soap.SoapError) as page:
        client.answer(200, b"<!DOCTYPE html><html></html>", "text/html")
    assert not page.value.fault


def test_no_dtd_is_read():
    with pytest.raises(soap.SoapError, match="DTD"):
        soap.parse(b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>')


def test_copy_of_the_order_is_not_changed_by_normalising():
    order = seed_order()
    before = copy.deepcopy(order)
    elements.normalise(order)
    assert order == before
