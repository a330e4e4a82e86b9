"""remote_imaging sans-I/O parts: the RSA sign, the push/statistics bodies, answer mapping."""

from __future__ import annotations

import base64
import copy
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from Crypto.PublicKey import RSA
from pydantic import ValidationError

from agent.dispatch.outcomes import Delivered, Reject, Retry
from agent.uplinks.remote_imaging import codec
from agent.uplinks.remote_imaging.config import RemoteImagingConfig
from agent.uplinks.remote_imaging.fields import PUSH, validate
from agent.uplinks.remote_imaging.sign import decrypt, encrypt, plaintext

APP_ID, ORG_ID, LICENSE, HOSPITAL = "app-001", "0571", "lic-3f9a-secret", "H0001"
STUDY_UID = "1.2.826.0.1.3680043.8.498.1"


@cache
def key_pair() -> RSA.RsaKey:
    """One 1024-bit test key per run (the platform's sign is VC(256): a 1024-bit key fits)."""
    return RSA.generate(1024)


def config_for(**overrides: Any) -> RemoteImagingConfig:
    settings: dict[str, Any] = {
        "type": "remote_imaging",
        "base_url": "http://127.0.0.1:8791/openapi",
        "app_id": APP_ID,
        "org_id": ORG_ID,
        "license": LICENSE,
        "public_key": key_pair().public_key().export_key().decode(),
        "hospital_code": HOSPITAL,
        "hospital_name": "东街社区卫生服务中心",
        "called_ae_title": "CITYPACS",
    }
    return RemoteImagingConfig.model_validate({**settings, **overrides})


def exam_payload(**study: Any) -> dict[str, Any]:
    """An outbox exam.push payload as the imaging handler queues it (contracts)."""
    exam = {
        "examNo": "E20240101001",
        "patientInfo": {"sickId": "S0001", "name": "张三", "sex": "男", "age": "45岁"},
        "examInfo": {
            "applyNo": "A0001",
            "patientID": "CT000001",
            "examStatus": "70",
            "examTime": "2024-01-01 08:30:00",
            "examClass": "CT",
            "examItemList": [{"itemCode": "CT01", "itemName": "胸部CT平扫"}],
            "examOrganList": [{"organName": "胸部"}],
        },
        "reportList": {"impression": "未见异常", "abNormalFlag": "0"},
        "studyUID": STUDY_UID,
        "accessionNo": "ACC001",
    }
    summary = {
        "study_uid": STUDY_UID,
        "patient_id": "CT000001",
        "accession": "ACC001",
        "modalities": ["CT", "SR"],
        "instance_count": 3,
        "series": [
            {"series_uid": "1.2.3.1", "modality": "CT", "instance_count": 2},
            {"series_uid": "1.2.3.2", "modality": "SR", "instance_count": 1},
        ],
        **study,
    }
    return {"exam": exam, "study": summary}


# --- sign ---------------------------------------------------------------------------------------


def test_sign_decrypts_to_appid_orgid_license():
    config = config_for()
    text = plaintext(config.sign_fields, config.sign_values(), datetime(2024, 1, 1))
    sign = encrypt(config.rsa_key(), text)
    assert len(sign) == 172 and base64.b64decode(sign)  # 128 bytes: fits the seed's VC(256)
    assert decrypt(key_pair(), sign) == f"{APP_ID},{ORG_ID},{LICENSE}"
    assert encrypt(config.rsa_key(), text) != sign  # PKCS#1 v1.5 pads randomly


def test_sign_fields_time_and_oaep_are_configurable():
    config = config_for(sign_fields=["appId", "license", "time"], sign_padding="oaep")
    text = plaintext(config.sign_fields, config.sign_values(), datetime(2024, 1, 2, 3, 4, 5))
    sign = encrypt(config.rsa_key(), text, "oaep")
    assert decrypt(key_pair(), sign, "oaep") == f"{APP_ID},{LICENSE},2024-01-02 03:04:05"
    assert decrypt(key_pair(), sign, "pkcs1v15") is None


def test_org_id_defaults_to_hospital_code():
    assert config_for(org_id=None).sign_values()["orgId"] == HOSPITAL


def test_public_key_as_bare_base64_der_or_file(tmp_path: Path):
    der = base64.b64encode(key_pair().public_key().export_key("DER")).decode()
    assert config_for(public_key=der).rsa_key() == key_pair().public_key()
    pem = tmp_path / "platform.pem"
    pem.write_bytes(key_pair().public_key().export_key())
    assert config_for(public_key=None, public_key_file=str(pem)).rsa_key().n == key_pair().n


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"public_key": "not a key"}, "not an RSA key"),
        ({"public_key": None}, "exactly one of public_key and public_key_file"),
        ({"public_key_file": "/nonexistent.pem"}, "exactly one"),
        ({"public_key": None, "public_key_file": "/nonexistent.pem"}, "public_key_file"),
        ({"public_key": key_pair().export_key().decode()}, "this is a private key"),
        ({"app_id": "a" * 120}, "takes at most 117"),
        ({"called_ae_title": "A" * 17}, "called_ae_title"),
        ({"image_url_template": "http://x/{nope}"}, "image_url_template"),
    ],
)
def test_bad_config_fails_at_start(overrides, error):
    with pytest.raises(ValidationError, match=error) as info:
        config_for(**overrides)
    assert LICENSE not in str(info.value)


# --- exam/push body ---------------------------------------------------------------------------


def test_push_body_from_the_payload():
    payload = exam_payload()
    body, problems = codec.build_push(payload, config_for())
    assert problems == []
    assert body["hospitalCode"] == HOSPITAL
    assert "studyUID" not in body and "accessionNo" not in body  # join keys, not seed fields
    info = body["examInfo"]
    assert info["reqHospitalCode"] == HOSPITAL
    assert info["reqHospitalName"] == "东街社区卫生服务中心"
    assert body["imageList"] == [
        {
            "imageType": "DICOM",
            "patientID": "CT000001",
            "studyUID": STUDY_UID,
            "accessionNo": "ACC001",
            "imageCount": 3,
            "modality": "CT",
        }
    ]
    assert payload == exam_payload()  # the message payload is not modified


def test_dicom_patient_id_wins_over_the_exams():
    body, problems = codec.build_push(exam_payload(patient_id="DICOM-PID"), config_for())
    assert problems == []
    assert body["examInfo"]["patientID"] == "DICOM-PID"
    assert body["imageList"][0]["patientID"] == "DICOM-PID"


def test_request_hospital_from_the_exam_is_kept():
    payload = exam_payload()
    payload["exam"]["examInfo"] |= {"reqHospitalCode": "H0002", "reqHospitalName": "县医院"}
    body, _ = codec.build_push(payload, config_for())
    assert body["examInfo"]["reqHospitalCode"] == "H0002"
    assert body["examInfo"]["reqHospitalName"] == "县医院"


def push_with(config: Any = None, study: dict[str, Any] | None = None, **info: Any) -> Any:
    payload = exam_payload()
    payload["exam"]["examInfo"].update(info)
    if study is not None:
        payload["study"].update(study)
    return codec.build_push(payload, config or config_for())


@pytest.mark.parametrize(
    ("posted", "sent"),
    [("CT", "CT"), ("DR", "X-Ray"), ("超声", "US"), ("心电", "ECG"), ("Microscopy", "Microscopy")],
)
def test_exam_class_is_translated_into_wncv5103_01(posted, sent):
    body, problems = push_with(examClass=posted)
    assert (body["examInfo"]["examClass"], problems) == (sent, [])


def test_an_exam_class_without_a_code_is_refused_before_sending_unless_unchecked():
    _, problems = push_with(examClass="胃肠造影")
    assert problems == ["examInfo.examClass: '胃肠造影' is not in WNCV5103_01 (exam_class_map)"]
    body, problems = push_with(
        config_for(exam_class_map={"胃肠造影": "X-Ray"}), examClass="胃肠造影"
    )
    assert (body["examInfo"]["examClass"], problems) == ("X-Ray", [])
    body, problems = push_with(config_for(check_exam_class=False), examClass="胃肠造影")
    assert (body["examInfo"]["examClass"], problems) == ("胃肠造影", [])
    with pytest.raises(ValueError, match="not a seed code: XR"):
        config_for(exam_class_map={"放射": "XR"})


@pytest.mark.parametrize(
    ("series", "modality", "problem"),
    [
        ([("CR", 3)], "DX", None),
        ([("RF", 2), ("SR", 5)], "XA", None),  # SR is no image modality: left out of the choice
        ([("PT", 4), ("CT", 2)], "NM", None),
        ([("OT", 1)], None, "imageList.modality: OT has no seed code (modality_map)"),
    ],
)
def test_dicom_modalities_become_the_seed_s(series, modality, problem):
    study = {"series": [{"modality": m, "instance_count": n} for m, n in series],
             "modalities": [m for m, _ in series]}  # fmt: skip
    body, problems = push_with(study=study)
    assert body["imageList"][0].get("modality") == modality
    assert problems == ([problem] if problem else [])
    body, problems = push_with(config_for(modality_map={"OT": "GM"}), study=study)
    assert problems == []


def test_body_parts_as_codes_and_specimen_categories_when_configured():
    organs = [{"organName": "胸部"}, {"organName": "10"}]
    body, problems = push_with(config_for(organ_names="codes"), examOrganList=organs)
    assert (body["examInfo"]["examOrganList"], problems) == (
        [{"organName": "06"}, {"organName": "10"}],
        [],
    )
    _, problems = push_with(config_for(organ_names="codes"), examOrganList=[{"organName": "肘"}])
    assert problems == ["examInfo.examOrganList[0].organName: not a §3.2.4.2 body part"]
    _, problems = push_with(config_for(check_specimen_category=True), specimenCategory="{")
    assert problems == []  # 白带: the seed's code, odd as it is
    _, problems = push_with(config_for(check_specimen_category=True), specimenCategory="XYZ")
    assert problems == ["examInfo.specimenCategory: not a §3.2.4.3 specimen category"]
    _, problems = push_with(specimenCategory="XYZ")  # unchecked by default
    assert problems == []


def test_statistics_classes_are_translated_and_merged():
    payload = {"date": "2024-01-01", "items": [
        {"examDate": "2024-01-01", "examClass": "DR", "accordCount": 2},
        {"examDate": "2024-01-01", "examClass": "CR", "accordCount": 3},
        {"examDate": "2024-01-01", "examClass": "胃肠造影", "accordCount": 1},
    ]}  # fmt: skip
    rows, problems = codec.build_statistics(payload, config_for(statistics_count_as_string=False))
    assert [(r["examClass"], r["accordCount"]) for r in rows] == [("X-Ray", 5), ("胃肠造影", 1)]
    assert problems == ["[2].examClass: '胃肠造影' is not in WNCV5103_01"]


def test_image_list_per_modality_and_image_url():
    config = config_for(image_list="per_modality", image_url_template="https://v/{study_uid}")
    body, problems = codec.build_push(exam_payload(accession=""), config)
    assert problems == []
    # SR has no seed modality (DX/CT/MR/XA/NM/US/ES/GM): not listed by modality
    assert [(i["modality"], i["imageCount"]) for i in body["imageList"]] == [("CT", 2)]
    assert all("accessionNo" not in i for i in body["imageList"])
    assert body["imageList"][0]["imageUrl"] == f"https://v/{STUDY_UID}"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda e: e["patientInfo"].pop("name"), "patientInfo.name: required field is missing"),
        (
            lambda e: e["patientInfo"].update(name="张" * 33),
            "patientInfo.name: 33 characters, at most 32 allowed (VC(32))",
        ),
        (
            lambda e: e["examInfo"].update(examTime="2024-01-01T08:30"),
            "examInfo.examTime: not a date-time '%Y-%m-%d %H:%M:%S'",
        ),
        (lambda e: e["examInfo"].update(examStatus="80"), "examStatus: must be one of 50"),
        (
            lambda e: e["examInfo"]["examItemList"][0].pop("itemName"),
            "examInfo.examItemList[0].itemName: required field is missing",
        ),
        (lambda e: e["examInfo"].update(cost="12.345"), "examInfo.cost: more than 2 decimals"),
        (lambda e: e["examInfo"].update(cost=1234567), "examInfo.cost: more than 6 digits"),
        (lambda e: e.update(extra="x"), "extra: not a field of the seed's table"),
        (lambda e: e["patientInfo"].update(sex=["男"]), "patientInfo.sex: bad type list"),
    ],
)
def test_a_violation_names_the_field_never_the_value(change, reason):
    payload = copy.deepcopy(exam_payload())
    change(payload["exam"])
    _, problems = codec.build_push(payload, config_for())
    assert any(reason in p for p in problems), problems
    assert not any("张" in p for p in problems)


def test_lengths_in_utf8_bytes_when_configured():
    payload = exam_payload()
    payload["exam"]["patientInfo"]["name"] = "欧阳娜娜娜娜娜娜娜娜娜"  # 11 chars, 33 bytes
    assert codec.build_push(payload, config_for())[1] == []
    _, problems = codec.build_push(payload, config_for(length_unit="utf8_bytes"))
    assert problems == ["patientInfo.name: 33 bytes, at most 32 allowed (VC(32))"]


def test_image_count_over_four_digits_is_refused():
    _, problems = codec.build_push(exam_payload(instance_count=10000), config_for())
    assert problems == ["imageList[0].imageCount: more than 4 digits (N(4))"]


def test_the_table_has_every_seed_field_of_the_push():
    assert set(PUSH) == {
        "examNo",
        "hospitalCode",
        "patientInfo",
        "examInfo",
        "reportList",
        "imageList",
    }
    assert validate(PUSH, {}) == [
        "examNo: required field is missing",
        "hospitalCode: required field is missing",
        "patientInfo: required field is missing",
        "examInfo: required field is missing",
    ]


# --- uploadStatistics body ----------------------------------------------------------------------


def test_statistics_body_adds_hospital_code_and_counts_as_strings():
    payload = {
        "date": "2024-01-01",
        "items": [{"examDate": "2024-01-01", "examClass": "CT", "accordCount": 55}],
    }
    rows, problems = codec.build_statistics(payload, config_for(statistics_classes=["CT", "MR"]))
    assert problems == []
    assert rows == [
        {
            "hospitalCode": HOSPITAL,
            "examDate": "2024-01-01",
            "examClass": "CT",
            "accordCount": "55",
        },
        {"hospitalCode": HOSPITAL, "examDate": "2024-01-01", "examClass": "MR", "accordCount": "0"},
    ]
    rows, _ = codec.build_statistics(payload, config_for(statistics_count_as_string=False))
    assert rows[0]["accordCount"] == 55


def test_statistics_of_several_days_and_hospitals_report_missing_classes_as_zero():
    payload = {
        "date": "2024-01-02",
        "dates": ["2024-01-01", "2024-01-02"],
        "items": [
            {"examDate": "2024-01-01", "examClass": "CT", "accordCount": 3},
            {"examDate": "2024-01-02", "hospitalCode": "H2", "examClass": "CT", "accordCount": 1},
        ],
    }
    config = config_for(statistics_classes=["CT"], statistics_count_as_string=False)
    rows, problems = codec.build_statistics(payload, config)
    assert problems == []
    assert {(r["examDate"], r["hospitalCode"], r["accordCount"]) for r in rows} == {
        ("2024-01-01", HOSPITAL, 3),
        ("2024-01-01", "H2", 0),
        ("2024-01-02", HOSPITAL, 0),
        ("2024-01-02", "H2", 1),
    }
    rows, _ = codec.build_statistics({**payload, "items": []}, config_for())
    assert rows == []  # no class configured: nothing to report on an empty day


def test_statistics_violations():
    bad = {"date": "2024-01-01", "items": [{"examDate": "01/01/2024", "accordCount": 12345}]}
    _, problems = codec.build_statistics(bad, config_for())
    assert problems == [
        "[0].examDate: not a date '%Y-%m-%d'",
        "[0].examClass: required field is missing",
        "[0].accordCount: more than 4 digits (N(4))",
    ]


# --- answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("http", "text", "expected", "reason"),
    [
        (200, '{"status": 0, "message": "操作成功"}', Delivered, ""),
        (200, '{"content": {"status": 0, "message": "ok"}}', Delivered, ""),
        (200, '{"status": 1, "message": "examNo重复"}', Reject, "status 1: examNo重复"),
        (200, '{"status": 1, "message": "系统繁忙"}', Retry, "platform error: status 1"),
        (200, '{"status": 1, "message": "请求超时"}', Retry, "platform error"),
        (200, '{"status": 500, "message": "服务器内部错误"}', Retry, "platform error: status 500"),
        (200, '{"status": 999, "message": "其他错误"}', Retry, "platform error: status 999"),
        (200, '{"status": 1, "message": "token无效或已过期"}', Retry, "token refused"),
        (200, '{"status": 999, "message": "鉴权失败"}', Retry, "token refused"),
        (401, "", Retry, "token refused: HTTP 401"),
        (403, "Forbidden", Retry, "token refused: HTTP 403: Forbidden"),
        (502, "Bad Gateway", Retry, "HTTP 502"),
        (429, "", Retry, "HTTP 429"),
        (200, "<html>portal</html>", Retry, "unexpected answer"),
        (404, "Not Found", Reject, "HTTP 404: Not Found"),
    ],
)
def test_answer_mapping(http, text, expected, reason):
    outcome = codec.http_outcome(config_for(), http, text)
    assert isinstance(outcome, expected)
    if not isinstance(outcome, Delivered):
        assert outcome.reason.startswith(reason), outcome.reason
    if isinstance(outcome, Retry):
        assert outcome.reauthenticate is reason.startswith("token refused")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (0x0000, Delivered),
        (0x0001, Delivered),
        (0xB000, Delivered),
        (0xB006, Delivered),
        (0xB007, Delivered),
        (0xA700, Retry),
        (0xA7FF, Retry),
        (0xA900, Reject),
        (0xC000, Reject),
        (0xC123, Reject),
        (0x0122, Reject),
        (None, Retry),
    ],
)
def test_dicom_status_mapping(status, expected):
    assert isinstance(codec.dicom_outcome(status), expected)


def test_tag_mismatch_names_tags_only():
    expect = {"PatientID": "P1", "StudyInstanceUID": "1.2", "AccessionNumber": "A1"}
    found = {"PatientID": "P1 ", "StudyInstanceUID": "1.2", "AccessionNumber": "A2"}
    assert codec.tag_mismatches(expect, found) == ["AccessionNumber"]
    both_empty = {**found, "AccessionNumber": ""}
    assert codec.tag_mismatches({**expect, "AccessionNumber": ""}, both_empty) == []
    assert codec.tag_mismatches({"AccessionNumber": None}, {"AccessionNumber": ""}) == []
