"""Seed 001 检查4-7, 检验7-9: a doctor station asks the results-sharing platform through the local
API and gets its data at once; lab queries are answered locally once asked (L223)."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from agent.config import ApiSection
from agent.journal.writer import Journal
from agent.simulators.results_sharing import ResultsSharingSimulator
from agent.uplinks.results_sharing.queries import SharingQueries
from agent.web.api import make_app
from tests.integration.test_results_sharing import PDF, sharing, start_platform

TOKEN = "query-api-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ID_CARD = "340102198001011234"
HELD = {"orgCode": "XC0002", "examNo": "X1", "idCardNo": ID_CARD, "patientName": "张三",
        "examClass": "CT", "abnormalFlag": "1"}  # fmt: skip


@pytest.fixture
async def platform() -> AsyncIterator[ResultsSharingSimulator]:
    simulator = await start_platform()
    simulator.received.records["uploadExamIndex"] = {"XC0002|X1": HELD}  # another hospital's
    simulator.received.records["uploadLabReport"] = {
        "XC0002|L1": {"orgCode": "XC0002", "reportNo": "L1", "idCardNo": ID_CARD}
    }
    yield simulator
    await simulator.stop()


@pytest.fixture
async def api(
    platform, open_journal, tmp_path
) -> AsyncIterator[tuple[TestClient[Any, Any], SharingQueries]]:
    journal: Journal = await open_journal.open()

    async def emit(event: Any) -> bool:
        return (await journal.ingest([event]))[0]

    queries = SharingQueries("sharing", sharing(platform.base_url, tmp_path))
    settings = ApiSection(enabled=True, token=SecretStr(TOKEN))
    app = make_app(settings, emit, journal.run, sharing_queries=queries)
    async with TestClient(TestServer(app)) as client:
        yield client, queries


async def ask(client: TestClient[Any, Any], name: str, body: Any) -> tuple[int, Any]:
    answer = await client.post(f"/api/v1/sharing/queries/{name}", json=body, headers=AUTH)
    return answer.status, await answer.json()


async def test_outside_exams_abnormal_results_and_a_viewer_key(api, platform):
    client, _ = api
    status, body = await ask(client, "exams", {"id_card_no": ID_CARD})
    assert status == 200 and body == {"source": "platform", "data": [HELD]}
    status, body = await ask(client, "exam_abnormal", {"id_card_no": ID_CARD})
    assert status == 200 and body["data"] == [HELD]
    status, body = await ask(
        client, "viewer_key", {"other_org_code": "XC0002", "study_uid": "1.2.3.4"}
    )
    assert status == 200
    key = body["data"]["viewerKey"]  # the platform issued it for that study
    verified = await platform._verify_key(
        "verifyViewerKey", "viewer", {"orgCode": "XC0002", "viewerKey": key, "studyUid": "1.2.3.4"}
    )
    assert json.loads(verified.text)["code"] == 200


async def test_lab_data_is_answered_locally_once_asked(api, platform):
    client, _ = api
    first = await ask(client, "labs", {"id_card_no": ID_CARD})
    asked = platform.received.requests
    second = await ask(client, "labs", {"id_card_no": ID_CARD})
    assert first[0] == second[0] == 200
    assert (first[1]["source"], second[1]["source"]) == ("platform", "local")
    assert (
        first[1]["data"]
        == second[1]["data"]
        == [{"orgCode": "XC0002", "reportNo": "L1", "idCardNo": ID_CARD}]
    )
    assert platform.received.requests == asked  # the platform was not asked again


async def test_bad_parameters_unknown_queries_and_an_unreachable_platform(api, platform):
    client, _ = api
    status, body = await ask(client, "exams", {})
    assert status == 422 and body["problems"] == ["idCardNo: required field is missing"]
    status, body = await ask(client, "exams", {"id_card": ID_CARD})
    assert status == 422 and body["problems"][0].startswith("id_card: not a parameter")
    status, body = await ask(client, "nonsense", {})
    assert status == 404 and "exams" in body["queries"]
    await platform.go_down()
    status, body = await ask(client, "exams", {"id_card_no": ID_CARD})
    assert status == 503


async def test_standard_item_codes_and_institutions_are_fetched_and_kept_a_day(api, platform):
    client, _ = api
    status, body = await ask(client, "item_codes", {"domain": "lab"})
    assert status == 200 and body["source"] == "platform"
    assert [item["itemCode"] for item in body["data"]] == ["JY0001", "JY0102"]  # 02 = lab
    status, body = await ask(client, "institutions", {"region_code": "341802"})
    assert status == 200
    assert [org["orgCode"] for org in body["data"]] == ["XC0001", "XC0002"]
    asked = platform.received.requests
    status, body = await ask(client, "institutions", {"region_code": "341802"})
    assert (status, body["source"]) == (200, "local") and platform.received.requests == asked
    status, body = await ask(client, "item_codes", {"domain": "pathology"})
    assert status == 422 and body["problems"][0].startswith("itemType")


async def test_kept_lab_answers_survive_a_restart_until_they_expire(
    platform, open_journal, tmp_path
):
    journal: Journal = await open_journal.open()
    config = sharing(platform.base_url, tmp_path)
    params = {"id_card_no": ID_CARD}
    first = SharingQueries("sharing", config)
    try:
        assert (await first.ask("labs", params, journal.run))[1]["source"] == "platform"
    finally:
        await first.close()
    asked = platform.received.requests
    later = time.time() + 86400 - 60  # the agent restarted within the day
    restarted = SharingQueries("sharing", config, clock=lambda: later)
    status, body = await restarted.ask("labs", params, journal.run)
    assert (status, body["source"]) == (200, "local") and platform.received.requests == asked
    assert body["data"] == [{"orgCode": "XC0002", "reportNo": "L1", "idCardNo": ID_CARD}]
    expired = SharingQueries("sharing", config, clock=lambda: later + 120)
    try:
        status, body = await expired.ask("labs", params, journal.run)
    finally:
        await expired.close()
    assert (status, body["source"]) == (200, "platform")
    (kept,) = await journal.run(
        lambda c: c.execute("SELECT data, expires_at - fetched_at FROM rs_query_cache").fetchall()
    )
    assert kept[1] == 86400 and ID_CARD not in str(
        await journal.run(lambda c: c.execute("SELECT params_hash FROM rs_query_cache").fetchall())
    )


async def test_a_report_pdf_is_fetched_from_the_platform_for_the_doctor_station(api, platform):
    client, _ = api
    sha = hashlib.sha256(PDF).hexdigest()
    platform._pdfs[sha] = PDF  # as if another hospital had uploaded it
    platform.received.records["uploadExamReportPdf"] = {
        f"XC0002|X1|{sha}": {"orgCode": "XC0002", "examNo": "X1", "fileHash": sha}
    }
    platform.received.records["uploadLabReportPdf"] = {
        "XC0002|L1": {"orgCode": "XC0002", "reportNo": "L1",
                      "pdfUrl": base64.b64encode(PDF).decode()},  # given inline, in Base64
        "XC0003|L1": {"orgCode": "XC0003", "reportNo": "L1",
                      "pdfUrl": "http://elsewhere.example/L1.pdf"},  # not the platform's
    }  # fmt: skip

    async def pdf(name: str, body: dict[str, str]) -> tuple[int, str, bytes]:
        answer = await client.post(f"/api/v1/sharing/queries/{name}/pdf", json=body, headers=AUTH)
        return answer.status, answer.content_type, await answer.read()

    by_url = await pdf("exam_pdf", {"other_org_code": "XC0002", "exam_no": "X1"})
    assert by_url == (200, "application/pdf", PDF)
    inline = await pdf("lab_pdf", {"other_org_code": "XC0002", "report_no": "L1"})
    assert inline == (200, "application/pdf", PDF)
    status, _, body = await pdf("exam_pdf", {"other_org_code": "XC0002", "exam_no": "X9"})
    assert status == 404 and "no PDF" in json.loads(body)["error"]
    status, _, body = await pdf("lab_pdf", {"other_org_code": "XC0003", "report_no": "L1"})
    assert status == 502  # our token never goes to an address outside the platform
    assert "not under the platform's base URLs" in json.loads(body)["reason"]
    status, _, body = await pdf("exams", {"id_card_no": ID_CARD})
    assert status == 404 and json.loads(body)["queries"] == ["exam_pdf", "lab_pdf"]
