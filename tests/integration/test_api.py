"""The local API: token-protected, validated, and what it accepts is journaled before 201."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from structlog.testing import capture_logs

from agent.config import ApiSection
from agent.journal import alerts
from agent.journal.alerts import Acknowledgements, Alert, raise_alert
from agent.reprocessing.handler import ReprocessingHandler
from agent.web.api import make_app
from tests.unit.test_compliance import Checked, opa_config

TOKEN = "api-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def centre(open_journal, tmp_path) -> Checked:
    handlers = (ReprocessingHandler("endo", opa_config()), Acknowledgements())
    journal = await open_journal.open(handlers=handlers)
    return Checked(journal, tmp_path / "journal.db")


@pytest.fixture
async def client(centre) -> AsyncIterator[TestClient[Any, Any]]:
    async def emit(event):
        return (await centre.journal.ingest([event]))[0]

    settings = ApiSection(enabled=True, token=SecretStr(TOKEN), max_body=1024)
    app = make_app(settings, emit, centre.journal.run)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_patient_set_through_the_api_goes_into_the_next_use(client, centre):
    await centre.cycle()
    response = await client.post(
        "/api/v1/patients",
        json={"reader_id": "R9", "patient_id": "HIS0042", "patient_name": "张三"},
        headers=AUTH,
    )
    assert response.status == 201 and "event_id" in await response.json()
    await centre.tap("R9", "00D507D0")
    kind, use = centre.messages()[-1]
    assert kind == "uploadUseStepData"
    assert (use["identityId"], use["name"]) == ("HIS0042", "张三")


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}]
)
async def test_requests_without_the_right_token_are_refused_and_logged_without_it(
    client, centre, headers
):
    with capture_logs() as logs:
        response = await client.post(
            "/api/v1/patients", json={"reader_id": "R9", "patient_id": "X1"}, headers=headers
        )
    assert response.status == 401
    assert [entry["event"] for entry in logs] == ["api.refused"]
    assert TOKEN not in str(logs) and "wrong" not in str(logs)
    assert centre.messages() == []


async def test_invalid_request_names_each_problem(client):
    response = await client.post(
        "/api/v1/patients", json={"reader_id": "", "patient_id": "9" * 40, "age": 3}, headers=AUTH
    )
    assert response.status == 422
    problems = (await response.json())["problems"]
    assert [p.split(":")[0] for p in problems] == ["reader_id", "patient_id", "age"]


async def test_oversized_request_is_refused(client):
    response = await client.post(
        "/api/v1/patients", data=b"{" + b" " * 4096 + b"}", headers={**AUTH, **JSON}
    )
    assert response.status == 413


async def test_open_alerts_are_listed_newest_first(client, centre):
    for n in (1, 2):
        alert = Alert("scope_used_without_cleaning", "scope:GIF-001", f"第{n}次使用", f"outbox:{n}")
        await centre.journal.run(lambda conn, a=alert: raise_alert(conn, a))
    assert not await centre.journal.run(lambda conn: raise_alert(conn, alert))  # once per origin
    response = await client.get("/api/v1/alerts", headers=AUTH)
    alerts = (await response.json())["alerts"]
    assert [a["message"] for a in alerts] == ["第2次使用", "第1次使用"]
    assert "第2次使用" in await response.text()  # UTF-8 as it reads, not \\u7b2c
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    raised = datetime.fromisoformat(alerts[0]["at"])  # ISO 8601 with its offset, not Unix seconds
    assert raised.utcoffset() == timedelta(0) and abs(raised - datetime.now(UTC)) < timedelta(1)
    assert (await client.get("/api/v1/alerts")).status == 401


async def test_an_alert_is_acknowledged_by_a_named_person_once(client, centre):
    await centre.run_cycle(R5=120)  # disinfection too short: an alert
    alert_id = (await (await client.get("/api/v1/alerts", headers=AUTH)).json())["alerts"][0]["id"]
    url = f"/api/v1/alerts/{alert_id}/acknowledge"
    assert (await client.post(url, json={"by": "王护士"})).status == 401
    assert (await client.post(url, json={"note": "no name"}, headers=AUTH)).status == 422
    response = await client.post(url, json={"by": "王护士", "note": "re-soaked"}, headers=AUTH)
    assert response.status == 201
    assert (await (await client.get("/api/v1/alerts", headers=AUTH)).json())["alerts"] == []
    assert (await client.post(url, json={"by": "王护士"}, headers=AUTH)).status == 409
    missing = await client.post("/api/v1/alerts/999/acknowledge", json={"by": "x"}, headers=AUTH)
    assert missing.status == 404


async def test_the_same_alert_raised_again_is_acknowledged_at_once_with_group(client, centre):
    for _ in range(2):
        await centre.run_cycle(R5=120)  # the same violation of the same scope, twice
    other = Alert("dicom_disk_low", "dicom:pacs", "below the reserve", "disk:1", "error")
    await centre.journal.run(lambda conn: raise_alert(conn, other))
    alerts = (await (await client.get("/api/v1/alerts", headers=AUTH)).json())["alerts"]
    repeated = [a for a in alerts if a["code"] == "ws507.contact_time"]
    assert len(repeated) == 2
    url = f"/api/v1/alerts/{repeated[0]['id']}/acknowledge"  # the newest of the two
    body = {"by": "王护士", "group": True}
    assert (await client.post(url, json=body, headers=AUTH)).status == 201
    left = (await (await client.get("/api/v1/alerts", headers=AUTH)).json())["alerts"]
    assert [a["code"] for a in left] == ["dicom_disk_low"]


async def test_several_alerts_are_acknowledged_at_once_by_one_person(client, centre):
    for n, code in enumerate(("dicom_disk_low", "dicom_rejected", "washer_receipt_rejected")):
        alert = Alert(code, f"source:{n}", "…", f"origin:{n}", "error")
        await centre.journal.run(lambda conn, a=alert: raise_alert(conn, a))
    ids = [
        a["id"] for a in (await (await client.get("/api/v1/alerts", headers=AUTH)).json())["alerts"]
    ]
    body = {"ids": ids[:2], "by": "信息科 张工", "note": "disk cleaned"}
    assert (await client.post("/api/v1/alerts/acknowledge", json=body, headers=AUTH)).status == 201
    left = (await (await client.get("/api/v1/alerts", headers=AUTH)).json())["alerts"]
    assert [a["id"] for a in left] == ids[2:]
    again = await client.post("/api/v1/alerts/acknowledge", json=body, headers=AUTH)
    assert again.status == 409  # they are not open any more: nothing half-done


async def test_a_known_condition_is_snoozed_but_still_recorded_and_published(client, centre):
    await centre.journal.run(lambda conn: alerts.set_routes(conn, ["bus"]))

    def batch_alert(n: int) -> Alert:
        message = "batch OPA-2611-01: no concentration test"
        return Alert(
            "ws507.batch_monitoring", "batch:OPA-2611-01", message, f"cycle:{n}", "warning"
        )

    await centre.journal.run(lambda conn: raise_alert(conn, batch_alert(1)))
    (alert,) = (await (await client.get("/api/v1/alerts", headers=AUTH)).json())["alerts"]
    url = f"/api/v1/alerts/{alert['id']}/snooze"
    body = {"by": "护士长 李", "reason": "new batch, test strips on order", "hours": 12}
    assert (await client.post(url, json={**body, "hours": 0}, headers=AUTH)).status == 422
    assert (await client.post(url, json=body, headers=AUTH)).status == 201
    await centre.journal.run(lambda conn: raise_alert(conn, batch_alert(2)))  # the next cycle
    assert (await (await client.get("/api/v1/alerts", headers=AUTH)).json())["alerts"] == []
    with sqlite3.connect(centre.path) as conn:
        recorded = conn.execute("SELECT acknowledged_by, note FROM alerts ORDER BY id").fetchall()
        published = [json.loads(p) for (p,) in conn.execute("SELECT payload FROM outbox")]
    assert recorded == [("snoozed by 护士长 李", body["reason"])] * 2
    assert [p["snoozed"] for p in published] == [False, True]  # both reached the bus
    critical = Alert("scope_blocked_used", "scope:GIF-001", "used although blocked", "use:9")
    await centre.journal.run(lambda conn: raise_alert(conn, critical))
    (pinned,) = (await (await client.get("/api/v1/alerts", headers=AUTH)).json())["alerts"]
    refused = await client.post(f"/api/v1/alerts/{pinned['id']}/snooze", json=body, headers=AUTH)
    assert refused.status == 409


async def test_a_blocked_scope_is_listed_and_released_only_by_a_named_override(client, centre):
    await centre.run_cycle(R5=120)
    scopes = (await (await client.get("/api/v1/scopes", headers=AUTH)).json())["scopes"]
    assert [(s["number"], s["blocked"]) for s in scopes] == [("GIF-001", True)]
    url = "/api/v1/scopes/GIF-001/override"
    body = {"by": "护士长 李", "reason": "soaked again by hand for 6 min"}
    assert (await client.post(url, json=body)).status == 401
    assert (await client.post(url, json={"by": "李"}, headers=AUTH)).status == 422
    assert (await client.post(url, json=body, headers=AUTH)).status == 201
    scopes = (await (await client.get("/api/v1/scopes", headers=AUTH)).json())["scopes"]
    assert scopes[0]["override"] == body and not scopes[0]["blocked"]
    assert (await client.post(url, json=body, headers=AUTH)).status == 409  # not blocked now
    unknown = await client.post("/api/v1/scopes/NOPE/override", json=body, headers=AUTH)
    assert unknown.status == 404
