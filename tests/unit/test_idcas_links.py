"""IDCAS page links: the seed's example URLs rebuilt byte-exact (tokens, per-value ciphertexts,
signs), and every parameter problem named (platforms/idcas_archive-brief.md §7)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from agent.crypto import des3
from agent.uplinks.idcas_archive import links
from agent.uplinks.idcas_archive.links import LinkError, LinkKeys
from agent.uplinks.idcas_archive.pages import PAGES
from tests.unit.test_crypto_des3 import KEY, MD5_KEY, V1_TOKEN, V3_SEV, V4_SEV, V4_TOKEN, V5_SEV

PORTAL = "https://portal-dev.mtywcloud.com"
JWT_1 = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6IjIzYTE0MmQ0ZTk3NGNhODFmNWNhNzZlYWZkYmQ1MTJhIiwidHlwIjoiYXQrand0"
    "In0._.K_KzjrkKDFbY6YWSo-1Ytb6Q3SlNq9MXt9n8UaFtAuQMCC4DDisc46NhNzRoPfiOowVT99cYgTIFdM0xhSz9oRG"
    "cGCwlHL-GvDzgMHMM3mAtol57Xw48Wurnm_SuGfxYmrwusYXh4nSeDJwxQugbiCZ84-F-cJ9_vubx032T18VuVoGG6OpV"
    "UxnTBtBOOlvUGCQmeoYAZ3dRpeTxCY1ryLduuI5lI3n3QSqhTT21u1ikk2kL57KjEzKMeGlYkHTyZ_kk8P7ZPDjBa0Sd1G"
    "_BDyitagwbzYEP1vYLh6B3OgYjaM81rCotn1Q7chDyFnpJs5wgaUzKY2mgOKLhbx8itA"
)
# 4.4's example URL, verbatim but for its typo `report_time_end&` (no `=`)
V7_REPORT_LIST = (
    f"{PORTAL}/sharevisit/mobile/digitalimage/report-list?encrypt_type=1&nosearch=true&"
    "identity_type=lpeFKtXZ1kc%3d&identity_no=%2bA%2bDB27wKMdgGAvdJoGw9vC3EZ2xzF82&"
    "card_type=lpeFKtXZ1kc%3d&card_no=&clinic_no=&med_rec_no=doH%2fXf73VKJgK6QOJMvuWg%3d%3d&"
    "perform_org_code=vvw30jQ1sjE%3d&exam_type=&perform_depart_code=6hBuR3av%2bzI%3d&"
    "req_time_start=&req_time_end=&perform_time_start=rpXMBIcxoZ7l4kYGnPgctQ%3d%3d&"
    "perform_time_end=rpXMBIcxoZ4aHMYWvn%2fLpQ%3d%3d&report_time_start=&report_time_end=&"
    f"patient_class=&result_state_code=&token={JWT_1}"
)


def keys(sev: str = V3_SEV) -> LinkKeys:
    return LinkKeys(des_key=KEY, md5_key=MD5_KEY, sev=sev)


def at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S")


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def test_v3_clinic_view_reproduces_the_seed_token_and_sign() -> None:
    url = links.build(
        "clinic-view",
        {"work_no": "001", "org_code": "2470", "accession_number": "SD-53242",
         "start_time": "2021-05-05", "end_time": "2021-05-19"},
        keys(),
        portal=PORTAL,
        now=at("2021-05-19 00:00:00"),
    )  # fmt: skip
    q = query(url)
    assert q["token"] == V1_TOKEN
    assert q["sev"] == V3_SEV
    assert q["timestamp"] == "2021-05-19 00:00:00"
    assert q["sign"] == "ab908f036c291be486c88a6d17aba48d"
    assert url.startswith(f"{PORTAL}/clinicview/index.html?source=his&nosearch=true&start_time=")
    # the seed's example, its stray space and lower-case escapes aside, is the same URL
    seed = query(
        "https://x/?source=his&start_time=2021-05-05&end_time=2021-05-19&token=R8DHV1doOCP2q3ymxuQZ"
        "xI2apra5vgW2GM1XKWVsu%2fKXaetkL2MLjfw4h6mY2A%2f7JT75uZ4Q9V9Zp5xltSTIGjnnBWG%2fyImKpW8rNelp%2bq"
        "wEoupCuBbF5QC4sWL4fOVYqbJ0lX%2fTM1htLm8D4Yn694HViUGRJn%2fdaPaQeyGv%2f9DLCmdotwYE2ALctnDsf7Q4"
        "9h%2bpGVHAPH0%3d&timestamp=2021-05-19 00:00:00&sign=ab908f036c291be486c88a6d17aba48d"
    )
    assert {k: v for k, v in q.items() if k not in ("nosearch", "sev")} == seed


def test_v4_pc_health_record_reproduces_the_seed_token_and_sign() -> None:
    url = links.build(
        "health-record",
        {"work_no": "1", "org_code": "1", "med_rec_no": "1", "perform_org_code": "2470",
         "accession_number": "SD-1", "exam_type": "CT"},
        keys(V4_SEV),
        portal=PORTAL,
        now=at("2021-05-25 16:00:00"),
    )  # fmt: skip
    q = query(url)
    assert (q["token"], q["sign"]) == (V4_TOKEN, "aee6746e4b91e1db72fb8e8eda3ef322")
    assert list(q)[:8] == [
        "obs_id", "perform_org_code", "accession_number", "patient_id", "placer_order_no",
        "exam_type", "from", "clinic_type",
    ]  # fmt: skip
    assert q["obs_id"] == "" and q["from"] == "third" and q["clinic_type"] == "0"


@pytest.mark.parametrize(
    ("clinic_type", "field", "value"),
    [("0", "exam_body_part", "头部"), ("1", "exam_item", "微量元素六项")],
)
def test_v5_repeat_reminder_signs_an_empty_token(clinic_type: str, field: str, value: str) -> None:
    values = {
        "clinic_type": clinic_type, "id_card_no": "230101198701115283", field: value,
        "user_org_code": "2470", "user_org_name": "示例医院", "user_id": "001",
        "user_name": "张医生", "patient_name": "李四",
    }  # fmt: skip
    url = links.build(
        "repeat-reminder", values, keys(V5_SEV), portal=PORTAL, now=at("2021-06-17 09:00:00")
    )
    q = query(url)
    assert "token" not in q
    assert q["sign"] == "2a473b73d482724f741205588957dfa0"
    assert url.split("?", 1)[1].startswith(f"clinic_type={clinic_type}&source=his&")
    assert q[field] == value


def test_v7_h5_report_list_is_the_seed_url() -> None:
    url = links.build(
        "h5-report-list",
        {"identity_type": "1", "identity_no": "330922196309015018", "card_type": "1",
         "med_rec_no": "SD-1601013025", "perform_org_code": "2470", "perform_depart_code": "RIS",
         "perform_time_start": "2019-11-01", "perform_time_end": "2019-11-02"},
        keys(),
        portal=PORTAL,
        now=at("2021-06-17 09:00:00"),
        user_token=JWT_1,
    )  # fmt: skip
    assert unquote(url) == unquote(V7_REPORT_LIST)
    assert url.lower() == V7_REPORT_LIST.lower()  # escapes aside, byte for byte


@pytest.mark.parametrize(
    ("page", "org", "org_cipher", "accession", "accession_cipher"),
    [
        ("h5-exam-detail", "2402", "mQ3OZ5VwkhQ=", "acc123", "W4TzqL72se4="),
        ("h5-lab-detail", "221", "36ynFgk4lxE=", "acc123", "W4TzqL72se4="),
    ],
)
def test_v7_h5_detail_pages_encrypt_each_value(
    page: str, org: str, org_cipher: str, accession: str, accession_cipher: str
) -> None:
    url = links.build(
        page,
        {"perform_org_code": org, "accession_number": accession, "patient_id": "P1",
         "exam_type": "CT"},
        keys(),
        portal=PORTAL,
        now=at("2021-06-17 09:00:00"),
        user_token=JWT_1,
    )  # fmt: skip
    q = query(url)
    assert (q["perform_org_code"], q["accession_number"]) == (org_cipher, accession_cipher)
    assert q["obs_id"] == "" and q["token"] == JWT_1
    assert list(q)[-4:] == ["exam_type", "from", "encrypt_type", "token"]
    assert des3.decrypt_text(q["patient_id"], KEY) == "P1"


def test_h5_health_record_is_plain_text_with_the_user_token() -> None:
    url = links.build(
        "h5-health-record",
        {"perform_org_code": "2470", "accession_number": "SD-1", "exam_type": "US"},
        keys(),
        portal=PORTAL,
        now=at("2021-06-17 09:00:00"),
        user_token=JWT_1,
    )
    q = query(url)
    assert (q["perform_org_code"], q["clinic_type"], q["token"]) == ("2470", "0", JWT_1)


def test_recognition_token_carries_numbers_and_verifies() -> None:
    values = {
        "visit_id": "V1", "org_code": "2470", "depart_code": "D1", "depart_name": "内科",
        "doctor_no": "001", "doctor_name": "张医生", "doctor_id_card": "330100198001010011",
        "card_type": "3", "card_no": "C1", "id_card_no": "330100199001010022",
        "patient_name": "李四", "patient_sex": "1", "patient_age": 34, "age_unit": "岁",
        "ip_address": "10.0.0.8", "ip_mac": "00-11-22-33-44-55", "req_type": "3101",
    }  # fmt: skip
    now = at("2026-12-07 08:00:00")
    q = query(links.build("recognition", values, keys(), portal=PORTAL, now=now))
    plain = des3.decrypt_text(q["token"], KEY)
    assert plain.startswith('{"visit_id":"V1","org_code":"2470"')
    assert '"card_type":3' in plain and '"patient_age":34' in plain and '"req_type":3101' in plain
    assert '"observation_item":""' in plain and "李四" in plain
    assert q["sign"] == links.sign(q["token"], V3_SEV, "2026-12-07 08:00:00", MD5_KEY)


def test_every_page_is_buildable() -> None:
    assert len(PAGES) == 9
    url = links.build(
        "quality-report", {}, keys(), portal=PORTAL + "/", now=at("2021-01-01 00:00:00")
    )
    assert url == f"{PORTAL}/sharevisit/mobile/system/dataquality"


@pytest.mark.parametrize(
    ("page", "values", "problem"),
    [
        ("nope", {}, "page: no page 'nope'"),
        ("clinic-view", {"org_code": "1"}, "work_no: required"),
        ("clinic-view", {"work_no": "1", "org_code": "1"}, "one of them is required"),
        ("clinic-view",
         {"work_no": "1", "org_code": "1", "visit_id": "V", "start_time": "2021-13-01"},
         "start_time: not a date yyyy-MM-dd"),
        ("clinic-view", {"work_no": "1", "org_code": "1", "visit_id": "V", "colour": "red"},
         "colour: clinic-view takes no such parameter"),
        ("h5-report-list", {"identity_type": "8", "identity_no": "X", "perform_org_code": "1",
                            "perform_time_start": "2021-01-01"}, "identity_type: not one of"),
        ("h5-report-list", {"identity_type": "1", "identity_no": "X", "perform_org_code": "1",
                            "perform_time_start": "2021-01-01", "patient_class": "0"},
         "patient_class: not one of 1, 2, 3, 4, 9"),
        ("repeat-reminder", {"clinic_type": "1"}, "exam_item: required when clinic_type is 1"),
        ("health-record",
         {"work_no": "1", "org_code": "1", "perform_org_code": "1", "exam_type": "XX"},
         "exam_type: not one of"),
        ("recognition", {"req_type": "3103"}, "observation_item: required when req_type is 3103"),
        ("recognition", {"patient_age": "abc"}, "patient_age: not a whole number"),
        ("clinic-view", {"work_no": True}, "work_no: must be a string or a number"),
    ],
)  # fmt: skip
def test_bad_parameters_are_named(page: str, values: dict[str, object], problem: str) -> None:
    with pytest.raises(LinkError) as info:
        links.build(
            page, values, keys(), portal=PORTAL, now=at("2021-01-01 00:00:00"), user_token="t"
        )
    assert problem in str(info.value)


def test_an_h5_page_without_a_user_token_is_refused() -> None:
    with pytest.raises(LinkError, match="user access token"):
        links.build(
            "h5-health-record",
            {"perform_org_code": "1", "accession_number": "A", "exam_type": "CT"},
            keys(),
            portal=PORTAL,
            now=at("2021-01-01 00:00:00"),
        )


def test_a_token_field_named_like_a_query_parameter_goes_in_the_token() -> None:
    values = {"work_no": "1", "org_code": "1", "perform_org_code": "1", "exam_type": "CT",
              "accession_number": "Q", "token.accession_number": "T"}  # fmt: skip
    q = query(
        links.build("health-record", values, keys(), portal=PORTAL, now=at("2021-01-01 00:00:00"))
    )
    assert q["accession_number"] == "Q"
    assert '"accession_number":"T"' in des3.decrypt_text(q["token"], KEY)
