"""The exam and study routes of the local API: validated, journaled, joined, reported."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from structlog.testing import capture_logs

from agent.config import ApiSection
from agent.imaging.handler import ImagingHandler
from agent.web.api import make_app
from agent.web.exams import add_exam_routes
from tests.unit.test_imaging_index import STUDY, T0, Index, config, exam_doc, stored

TOKEN = "exams-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OTHER = "1.2.826.0.1.3680043.8.498.200"


def with_exam_routes(app: web.Application) -> web.Application:
    """make_app's application with the exam routes (registered once, whoever adds them)."""
    if not any(r.resource and r.resource.canonical == "/api/v1/exams" for r in app.router.routes()):
        add_exam_routes(app)
    return app


@pytest.fixture
async def index(open_journal) -> Index:
    handler = ImagingHandler("imaging", config())
    return Index(await open_journal.open(handlers=(handler,)))


@pytest.fixture
async def client(index) -> AsyncIterator[TestClient[Any, Any]]:
    async def emit(event):
        return (await index.journal.ingest([event]))[0]

    settings = ApiSection(enabled=True, token=SecretStr(TOKEN), max_body=64 * 1024)
    app = with_exam_routes(make_app(settings, emit, index.journal.run))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_a_posted_exam_is_journaled_and_pushed_once_its_study_is_stable(client, index):
    doc = exam_doc(accessionNo="ACC001")
    with capture_logs() as logs:
        response = await client.post("/api/v1/exams", json=doc, headers=AUTH)
    assert response.status == 201
    event_id = (await response.json())["event_id"]
    assert await index.rows("SELECT exam_no, event_id, exam_status FROM im_exams") == [
        ("E001", event_id, "70")
    ]
    assert "张三" not in str(logs) and "ACC001" not in str(logs)
    await index.ingest(stored("1"))
    await index.stable()
    push = (await index.messages())[0][2]
    assert push["exam"] == doc


async def test_numbers_are_taken_as_the_seed_s_strings(client, index):
    doc = exam_doc()
    doc["examInfo"]["examStatus"] = 60
    assert (await client.post("/api/v1/exams", json=doc, headers=AUTH)).status == 201
    assert await index.rows("SELECT exam_status FROM im_exams") == [("60",)]


async def test_an_invalid_exam_is_refused_with_every_problem(client, index):
    doc = exam_doc(hospitalCode="0" * 33, studyUID="not a uid")  # VC(32)
    del doc["examNo"]
    doc["patientInfo"]["name"] = "名" * 33
    doc["patientInfo"]["sex"] = "M"
    doc["examInfo"]["examStatus"] = "80"
    doc["examInfo"]["examTime"] = "2026-11-23T10:00:00"
    doc["examInfo"]["examItemList"] = [{"itemCode": "X"}]
    doc["reportList"]["affirmTime"] = "2026-02-30 10:00:00"
    response = await client.post("/api/v1/exams", json=doc, headers=AUTH)
    assert response.status == 422
    problems = (await response.json())["problems"]
    assert sorted(p.split(":")[0] for p in problems) == [
        "examInfo.examItemList.0.itemName",
        "examInfo.examStatus",
        "examInfo.examTime",
        "examNo",
        "hospitalCode",
        "patientInfo.name",
        "patientInfo.sex",
        "reportList.affirmTime",
        "studyUID",
    ]
    assert await index.rows("SELECT * FROM events") == []


@pytest.mark.parametrize(("body", "status"), [(b"{not json", 400), (b"[1, 2]", 422)])
async def test_a_body_that_is_no_json_object_is_refused(client, body, status):
    headers = {**AUTH, "Content-Type": "application/json"}
    response = await client.post("/api/v1/exams", data=body, headers=headers)
    assert response.status == status


async def test_a_body_that_is_not_json_is_refused_unread(client):
    response = await client.post("/api/v1/exams", data=b'{"examNo": "E1"}', headers=AUTH)
    assert response.status == 415


async def test_exam_and_study_routes_need_the_token(client):
    assert (await client.post("/api/v1/exams", json=exam_doc())).status == 401
    assert (await client.get("/api/v1/studies")).status == 401
    assert (await client.get(f"/api/v1/studies/{STUDY}")).status == 401


async def test_studies_list_counts_instances_exams_and_deliveries(client, index):
    await index.ingest(stored("1"), stored("2", number=2), stored("1", study=OTHER, at=T0))
    await index.ingest(stored("3", number=3, at=T0 + timedelta(seconds=1)))
    await client.post("/api/v1/exams", json=exam_doc(accessionNo="ACC001"), headers=AUTH)
    await index.stable(study=STUDY)
    await index.journal.run(
        lambda conn: conn.execute(
            "UPDATE outbox SET state = CASE id WHEN 1 THEN 'delivered' WHEN 2 THEN 'delivered'"
            " WHEN 3 THEN 'dead' WHEN 4 THEN 'inflight' ELSE state END"
        )
    )
    response = await client.get("/api/v1/studies", headers=AUTH)
    assert response.status == 200
    studies = (await response.json())["studies"]
    assert [(s["study_uid"], s["instance_count"], s["state"]) for s in studies] == [
        (STUDY, 3, "stable"),
        (OTHER, 1, "receiving"),
    ]
    first = studies[0]
    assert first["exams"] == [
        {"exam_no": "E001", "exam_status": "70", "exam_class": "CT", "exam_date": "2026-11-23"}
    ]
    assert first["delivery"] == {
        "remote_imaging": {
            "exam.push": {"pending": 0, "delivered": 1, "dead": 0},
            "dicom.instance": {"pending": 1, "delivered": 1, "dead": 1},
        }
    }
    assert studies[1]["delivery"] == {} and studies[1]["exams"] == []
    limited = await client.get("/api/v1/studies?limit=1", headers=AUTH)
    assert [s["study_uid"] for s in (await limited.json())["studies"]] == [STUDY]


@pytest.mark.parametrize("limit", ["0", "501", "x", "-1"])
async def test_a_bad_limit_is_refused(client, limit):
    response = await client.get(f"/api/v1/studies?limit={limit}", headers=AUTH)
    assert response.status == 400
    assert (await response.json())["problems"][0].startswith("limit:")


async def test_one_study_in_detail_or_404(client, index):
    await index.ingest(stored("1"), stored("2", series="2", series_number=2))
    doc = exam_doc(studyUID=STUDY)
    await client.post("/api/v1/exams", json=doc, headers=AUTH)
    response = await client.get(f"/api/v1/studies/{STUDY}", headers=AUTH)
    assert response.status == 200
    study = (await response.json())["study"]
    assert study["patient"] == {
        "id": "P001",
        "name": "ZHANG^SAN",
        "sex": "M",
        "birth_date": "19800101",
    }
    assert [(s["number"], s["instance_count"]) for s in study["series"]] == [(1, 1), (2, 1)]
    assert study["exam_documents"] == [doc]
    assert study["modalities"] == ["CT"]
    missing = await client.get(f"/api/v1/studies/{OTHER}", headers=AUTH)
    assert missing.status == 404
    assert json.loads(await missing.text()) == {"error": "no such study"}
