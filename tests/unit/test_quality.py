"""Quality records: the platform records built from them pass the seed's tables (build_form)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from agent.reprocessing.config import QualityConfig
from agent.reprocessing.quality import QualityHandler
from agent.uplinks.zhejiang_endoscope.codec import build_form
from agent.uplinks.zhejiang_endoscope.config import ZhejiangEndoscopeConfig
from tests.unit.test_reprocessing import make_config

NAME = "a" * 64 + ".jpg"
AT = datetime(2026, 11, 23, 1, 30, tzinfo=UTC)  # 09:30 in Hangzhou
UPLINK = ZhejiangEndoscopeConfig.model_validate(
    {
        "type": "zhejiang_endoscope",
        "base_url": "http://127.0.0.1:1/openapi",
        "access_key": "ak",
        "access_secret": "sk",
        "unique_code": "330100001",
        "credit_code": "12330100470000000X",
    }
)


def handler(**quality: Any) -> QualityHandler:
    return QualityHandler("quality", make_config(), QualityConfig(**quality))


def checked(endpoint: str, record: dict[str, Any]) -> dict[str, str]:
    form, problems = build_form(endpoint, record, UPLINK)
    assert problems == []
    return form


def test_disinfectant_test_becomes_a_valid_upload_disinfect_data():
    payload = {
        "ratio_number": "OPA-2611-01",
        "disinfectant": "opa",
        "duration_minutes": 5.0,
        "frequency": "1",
        "passed": False,
        "photos": [NAME],
    }
    form = checked("uploadDisinfectData", handler().disinfectant_record(payload, AT))
    assert form == {
        "ratioNumber": "OPA-2611-01",
        "disinfectDuration": "5",
        "disinfectantConc": "1",
        "imageUrl": f"photos/{NAME}",
        "uploadTime": "2026-11-23 09:30:00",
        "frequency": "1",
        "result": "0",
        "uniqueCode": "330100001",
        "creditCode": "12330100470000000X",
    }


def test_disinfectant_test_without_photo_has_no_image_url_and_decimal_minutes():
    payload = {
        "ratio_number": "B1",
        "disinfectant": "custom",
        "duration_minutes": 7.5,
        "frequency": "每日一次",
        "passed": True,
    }
    form = checked("uploadDisinfectData", handler().disinfectant_record(payload, AT))
    assert "imageUrl" not in form
    assert (form["disinfectantConc"], form["disinfectDuration"], form["result"]) == (
        "6",
        "7.5",
        "1",
    )


@pytest.mark.parametrize(
    ("status", "filter_", "expected"),
    [("normal", None, {"status": "1"}), ("fault", "replace", {"status": "2", "dfcwStatus": "2"})],
)
def test_rinse_water_check_becomes_a_valid_rinse_water(status, filter_, expected):
    payload = {"device": "WTE-01", "status": status, "recorded_by": "王护士"}
    if filter_:
        payload["filter"] = filter_
    form = checked("rinseWater", handler().rinse_water_record(payload))
    institution = {"uniqueCode": "330100001", "creditCode": "12330100470000000X"}
    assert form == {"wteNumber": "WTE-01", **expected, **institution}


def test_cleaning_effect_names_a_configured_scope_as_the_other_records_do():
    base = "https://pacs.example.org/quality-photos/"
    payload = {"scope": "GIF-001", "inspector": "李医生", "passed": True, "photos": [NAME] * 3}
    form = checked(
        "cleaningEffectTesting",
        handler(photo_base_url=base).cleaning_effect_record(payload, AT),
    )
    assert form["rfidNumber"] == "GIF-001"  # scope_refs: the seed's 内镜编号 (the default)
    assert [form[f"pic{n}"] for n in (1, 2, 3)] == [base + NAME] * 3
    record = handler(photo_base_url=base).cleaning_effect_record(payload, AT)
    as_domain = UPLINK.model_copy(update={"scope_refs": {"cleaningEffectTesting": "domain"}})
    form, _ = build_form("cleaningEffectTesting", record, as_domain)
    assert form["rfidNumber"] == "00D507D0"  # [domains.*] scope_ref = "rfid" (its default)
    assert (form["testingTime"], form["inspector"], form["result"]) == (
        "2026-11-23 09:30:00",
        "李医生",
        "1",
    )


def test_cleaning_effect_of_an_unconfigured_scope_sends_its_number():
    payload = {"scope": "BF-9", "inspector": "N001", "passed": False, "photos": [NAME]}
    form = checked("cleaningEffectTesting", handler().cleaning_effect_record(payload, AT))
    assert (form["rfidNumber"], form["pic1"], form["result"]) == ("BF-9", f"photos/{NAME}", "0")
    assert "pic2" not in form


def test_a_photo_base_url_too_long_for_the_platform_fields_is_a_config_error():
    QualityConfig(photo_base_url="h" * 132)
    with pytest.raises(ValidationError):
        QualityConfig(photo_base_url="h" * 133)  # + 68-char name > imageUrl's 200
