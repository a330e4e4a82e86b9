"""Seed 003 §3.1 end to end: RIS looks up a patient's 基卫 apply forms through the local API (the
agent holds the AES key), the forms are journaled, and an exam posted without applyNo is pushed
to the city platform with the form's applycode."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from agent.config import ApiSection
from agent.crypto.aes import decrypt_text, encrypt_text
from agent.imaging.handler import ImagingHandler
from agent.simulators.remote_imaging import RemoteImagingSimulator
from agent.uplinks.remote_imaging import jiwei
from agent.uplinks.remote_imaging.jiwei import JiweiError, JiweiSection, parse_answer
from agent.uplinks.remote_imaging.uplink import RemoteImagingUplink
from agent.web.api import make_app
from drivers.dicom.forward import FORWARDING
from tests.dispatching import outbox_rows, run_dispatcher
from tests.helpers import eventually
from tests.integration.test_remote_imaging import FAST, city_platform, uplink_config
from tests.integration.test_remote_imaging_modes import seed_003
from tests.unit.test_imaging_index import Index, exam_doc

KEY = "jiwei-key-16byte"
TOKEN = "jiwei-api-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FORM = {
    "applycode": "SQ20261123001", "fkey": "P001", "medicarecode": "330100198001010011",
    "patname": "张三", "gender": "男", "checkproject": "胸部CT平扫", "applydate": "2026-11-23",
    "yyid00": "6930", "businesstype": "1", "type": "2",
}  # fmt: skip
ECG_FORM = {**FORM, "applycode": "SQ20261123002", "type": "1", "checkproject": "常规心电图"}


@pytest.fixture
async def platform() -> AsyncIterator[RemoteImagingSimulator]:
    async with city_platform(jiwei_key=KEY) as simulator:
        simulator.apply_forms = [FORM, ECG_FORM]
        yield simulator


def section(platform: RemoteImagingSimulator, **changes: Any) -> JiweiSection:
    return JiweiSection.model_validate(
        {
            "enabled": True,
            "url": f"http://{platform.host}:{platform.port}/jiwei/applyInfo",
            "aes_key": KEY,
            **changes,
        }
    )


async def test_a_lookup_feeds_apply_no_of_an_exam_posted_without_one(open_journal, platform):
    index = Index(await open_journal.open(handlers=(ImagingHandler("imaging", seed_003()),)))

    async def emit(event: Any) -> bool:
        return (await index.journal.ingest([event]))[0]

    async def lookup(given: Any) -> Any:
        return await jiwei.lookup(section(platform), given)

    settings = ApiSection(enabled=True, token=SecretStr(TOKEN), max_body=64 * 1024)
    app = make_app(settings, emit, index.journal.run, apply_forms=lookup)
    uplink = RemoteImagingUplink("remote_imaging", uplink_config(platform), FORWARDING)
    async with TestClient(TestServer(app)) as client, run_dispatcher(index.journal, uplink, FAST):
        asked = {"medicarecode": "330100198001010011", "type": "2"}
        response = await client.post("/api/v1/apply-forms/lookup", json=asked, headers=AUTH)
        assert response.status == 200
        assert [f["applycode"] for f in (await response.json())["forms"]] == ["SQ20261123001"]
        stored = await client.get("/api/v1/apply-forms?fkey=P001", headers=AUTH)
        assert [f["applycode"] for f in (await stored.json())["forms"]] == ["SQ20261123001"]
        doc = exam_doc("E1")
        del doc["examInfo"]["applyNo"]
        assert (await client.post("/api/v1/exams", json=doc, headers=AUTH)).status == 201
        await eventually(lambda: _delivered(index))
    [pushed] = platform.received.pushes
    assert pushed["examInfo"]["applyNo"] == "SQ20261123001"


async def _delivered(index: Index) -> bool | None:
    rows = await outbox_rows(index.journal)
    return True if rows and all(r["state"] == "delivered" for r in rows.values()) else None


async def test_an_unreachable_or_refusing_jiwei_is_a_502_naming_why(open_journal, platform):
    index = Index(await open_journal.open(handlers=(ImagingHandler("imaging", seed_003()),)))
    wrong_key = section(platform, aes_key="another-key-16by")

    async def lookup(given: Any) -> Any:
        return await jiwei.lookup(wrong_key, given)

    async def emit(event: Any) -> bool:
        return (await index.journal.ingest([event]))[0]

    settings = ApiSection(enabled=True, token=SecretStr(TOKEN), max_body=64 * 1024)
    app = make_app(settings, emit, index.journal.run, apply_forms=lookup)
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/api/v1/apply-forms/lookup", json={}, headers=AUTH)
        assert response.status == 502
        assert "unreadable" in (await response.json())["error"]
    assert await index.rows("SELECT COUNT(*) FROM im_apply_forms") == [(0,)]


def test_answers_as_java_writes_them_are_read():
    envelope = {"content": [FORM], "success": "true"}
    mime = encrypt_text(json.dumps(envelope, ensure_ascii=False), KEY, mode="ECB", output="mime")
    assert "\n" in mime  # 76-column lines, as sun.misc.BASE64Encoder
    assert parse_answer(mime.replace("\n", "\r\n"), KEY) == [FORM]
    failure = {"errorCode": "98", "errorMsg": "缺少必传参数：orgid！", "success": "false"}
    text = encrypt_text(json.dumps(failure, ensure_ascii=False), KEY, mode="ECB")
    with pytest.raises(JiweiError, match="errorCode 98: 缺少必传参数：orgid！"):
        parse_answer(text, KEY)


def test_the_request_carries_param_where_configured():
    query = {"medicarecode": "C1", "type": "1"}
    as_json = jiwei.request_parts(query, KEY, JiweiSection())
    assert json.loads(decrypt_text(as_json["json"]["param"], KEY, mode="ECB")) == query
    as_form = jiwei.request_parts(query, KEY, JiweiSection(param="form_field", param_name="p"))
    assert set(as_form["data"]) == {"p"}
    with pytest.raises(ValueError, match="16, 24 or 32 bytes"):
        JiweiSection(aes_key=SecretStr("short"))
