"""Quality records through the local API: validated, photos stored, journaled, queued, alerted."""

from __future__ import annotations

import base64
import json
import sqlite3
import struct
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from structlog.testing import capture_logs
from yarl import URL

from agent.config import ApiSection
from agent.journal.alerts import open_alerts
from agent.journal.writer import Journal
from agent.reprocessing.config import QualityConfig
from agent.reprocessing.quality import QualityHandler
from agent.simulators.zhejiang_endoscope import ZhejiangEndoscopeSimulator
from agent.uplinks.zhejiang_endoscope.codec import build_form
from agent.uplinks.zhejiang_endoscope.uplink import ZhejiangEndoscopeUplink
from agent.web.api import make_app
from agent.web.quality import add_quality_routes
from tests.helpers import eventually
from tests.integration.test_zhejiang_endoscope import UPLINK, dispatching, settled, uplink_config
from tests.platform_fields import as_sent
from tests.unit.test_reprocessing import make_config

TOKEN = "quality-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_PHOTO = 4096
DISINFECTANT = "/api/v1/quality/disinfectant-tests"
RINSE = "/api/v1/quality/rinse-water"
CLEANING = "/api/v1/quality/cleaning-effect-tests"
BASE_URL = "https://files.example.org/q/"


def png(width: int = 1, height: int = 1) -> bytes:
    """A valid RGB PNG of white pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\xff" * 3 * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# The well-known smallest valid JPEG: 1x1, grey, arithmetic-coded (125 bytes).
JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010101004800480000"
    "ffdb004300030202020203020202030303030406040404040408060605060908"
    "0a0a090809090a0c0f0c0a0b0e0b09090d110d0e0f101011100a0c12131210130f101010"
    "ffc9000b080001000101011100ffcc000600101005ffda0008010100003f00d2cf20ffd9"
)
PNG = png()
BIG = png(64, 64)[:8] + bytes(MAX_PHOTO)  # a PNG's magic, and too many bytes


@pytest.fixture
async def journal(open_journal: Any) -> Journal:
    config = make_config(uplink=UPLINK)
    quality = QualityConfig(photo_base_url=BASE_URL)
    handler = QualityHandler("quality", config, quality)
    opened: Journal = await open_journal.open(handlers=(handler,))
    return opened


@pytest.fixture
def photos_dir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "photos"


@pytest.fixture
async def client(journal: Journal, photos_dir: Path) -> AsyncIterator[TestClient[Any, Any]]:
    async def emit(event: Any) -> bool:
        return (await journal.ingest([event]))[0]

    settings = ApiSection(enabled=True, token=SecretStr(TOKEN), max_body=64 * 1024)
    app = make_app(settings, emit, journal.run)
    add_quality_routes(app, photos_dir, MAX_PHOTO)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def table(journal: Journal, sql: str) -> list[dict[str, Any]]:
    def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        cursor = conn.execute(sql)
        columns = [c[0] for c in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    return await journal.run(read)


async def outbox(journal: Journal) -> list[dict[str, Any]]:
    rows = await table(journal, "SELECT kind, order_key, dedupe_key, payload FROM outbox")
    return [{**row, "payload": as_sent(row["kind"], json.loads(row["payload"]))} for row in rows]


def form(fields: dict[str, str], photos: list[bytes] = ()) -> aiohttp.FormData:  # type: ignore[assignment]
    data = aiohttp.FormData(default_to_multipart=True)
    for name, value in fields.items():
        data.add_field(name, value)
    for n, photo in enumerate(photos):
        data.add_field("photo", photo, filename=f"p{n}.img", content_type="image/jpeg")
    return data


def valid_form(kind: str, record: dict[str, Any]) -> dict[str, str]:
    from tests.unit.test_quality import UPLINK as UPLINK_CONFIG

    built, problems = build_form(kind, record, UPLINK_CONFIG)
    assert problems == []
    return built


DISINFECTANT_TEST = {
    "ratio_number": "OPA-2611-01",
    "disinfectant": "opa",
    "duration_minutes": 5,
    "tested_at": "2026-11-23T09:30:00+08:00",
    "frequency": "1",
    "passed": True,
    "recorded_by": "王护士",
}


async def test_disinfectant_test_as_json_is_journaled_queued_and_valid(client, journal):
    response = await client.post(DISINFECTANT, json=DISINFECTANT_TEST, headers=AUTH)
    assert response.status == 201
    event_id = (await response.json())["event_id"]
    [message] = await outbox(journal)
    assert message["kind"] == "uploadDisinfectData"
    assert message["order_key"] == "quality:disinfectant:OPA-2611-01"
    assert message["dedupe_key"] == f"uploadDisinfectData:{event_id}"
    assert valid_form("uploadDisinfectData", message["payload"]) == {
        "ratioNumber": "OPA-2611-01",
        "disinfectDuration": "5",
        "disinfectantConc": "1",
        "uploadTime": "2026-11-23 09:30:00",
        "frequency": "1",
        "result": "1",
        "uniqueCode": "330100001",
        "creditCode": "12330100470000000X",
    }
    [row] = await table(journal, "SELECT * FROM quality_tests")
    assert (row["kind"], row["subject"], row["passed"], row["recorded_by"]) == (
        "disinfectant",
        "OPA-2611-01",
        1,
        "王护士",
    )
    assert row["tested_at"] == "2026-11-23T01:30:00+00:00" and row["event_id"] == event_id
    assert await journal.run(open_alerts) == []


async def test_disinfectant_test_multipart_with_photo_stores_it_before_the_event(
    client, journal, photos_dir
):
    fields = {
        k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in DISINFECTANT_TEST.items()
    }
    fields |= {"passed": "false", "tested_at": "2026-11-23T09:30"}  # an HTML datetime-local
    response = await client.post(DISINFECTANT, data=form(fields, [JPEG]), headers=AUTH)
    assert response.status == 201, await response.text()
    [name] = (await response.json())["photos"]
    assert name.endswith(".jpg") and (photos_dir / name).read_bytes() == JPEG
    assert [p.name for p in photos_dir.iterdir()] == [name]  # no temporary file left
    [message] = await outbox(journal)
    record = valid_form("uploadDisinfectData", message["payload"])
    assert record["imageUrl"] == BASE_URL + name and record["result"] == "0"
    assert record["uploadTime"] == "2026-11-23 09:30:00"  # without offset: the centre's time
    [alert] = await journal.run(open_alerts)
    assert (alert["severity"], alert["code"], alert["subject"]) == (
        "error",
        "disinfectant_test_failed",
        "batch:OPA-2611-01",
    )
    served = await client.get(f"/api/v1/quality/photos/{name}", headers=AUTH)
    assert served.status == 200 and served.content_type == "image/jpeg"
    assert await served.read() == JPEG


async def test_rinse_water_fault_and_filter_raise_two_alerts(client, journal):
    body = {"device": "WTE-01", "status": "fault", "filter": "replace", "recorded_by": "N001"}
    with capture_logs() as logs:
        response = await client.post(RINSE, json=body, headers=AUTH)
    assert response.status == 201
    assert [e for e in logs if e["event"] == "quality.recorded"] == [
        {
            "event": "quality.recorded",
            "kind": "quality.rinse_water",
            "photos": 0,
            "log_level": "info",
        }
    ]
    [message] = await outbox(journal)
    assert message["order_key"] == "quality:rinse_water:WTE-01"
    record = valid_form("rinseWater", message["payload"])
    assert (record["wteNumber"], record["status"], record["dfcwStatus"]) == ("WTE-01", "2", "2")
    alerts = {a["code"]: a["severity"] for a in await journal.run(open_alerts)}
    assert alerts == {"rinse_water_device_fault": "error", "rinse_water_filter_replace": "warning"}
    [row] = await table(journal, "SELECT passed, tested_at FROM quality_tests")
    assert row["passed"] == 0 and row["tested_at"].endswith("+00:00")  # default: now, in UTC


async def test_rinse_water_multipart_blank_filter_counts_as_not_given(client, journal):
    fields = {"device": "WTE-01", "status": "normal", "filter": "", "recorded_by": "N001"}
    response = await client.post(RINSE, data=form(fields), headers=AUTH)
    assert response.status == 201, await response.text()
    [message] = await outbox(journal)
    assert "dfcwStatus" not in valid_form("rinseWater", message["payload"])
    assert await journal.run(open_alerts) == []


async def test_cleaning_effect_multipart_with_three_photos(client, journal, photos_dir):
    fields = {"scope": "GIF-001", "inspector": "李医生", "passed": "0"}
    photos = [JPEG, PNG, png(2, 2)]
    response = await client.post(CLEANING, data=form(fields, photos), headers=AUTH)
    assert response.status == 201, await response.text()
    names = (await response.json())["photos"]
    assert [n[-3:] for n in names] == ["jpg", "png", "png"]
    [message] = await outbox(journal)
    assert message["order_key"] == "quality:cleaning_effect:GIF-001"
    record = valid_form("cleaningEffectTesting", message["payload"])
    assert [record[f"pic{n}"] for n in (1, 2, 3)] == [BASE_URL + n for n in names]
    assert (record["rfidNumber"], record["inspector"], record["result"]) == (
        "GIF-001",  # the scope's number: scope_refs' default for cleaningEffectTesting
        "李医生",
        "0",
    )
    [alert] = await journal.run(open_alerts)
    assert (alert["code"], alert["subject"]) == ("cleaning_effect_failed", "scope:GIF-001")
    [row] = await table(journal, "SELECT recorded_by FROM quality_tests")
    assert row["recorded_by"] == "李医生"  # the inspector, when nobody else is named
    for name, data in zip(names, photos, strict=True):
        served = await client.get(f"/api/v1/quality/photos/{name}", headers=AUTH)
        assert await served.read() == data


async def test_cleaning_effect_json_with_base64_photos(client, journal):
    body = {
        "scope": "CF-002",
        "tested_at": "2026-11-23T02:00:00Z",
        "inspector": "N002",
        "passed": True,
        "photos": [
            base64.b64encode(PNG).decode(),
            "data:image/jpeg;base64," + base64.b64encode(JPEG).decode(),
        ],
    }
    response = await client.post(CLEANING, json=body, headers=AUTH)
    assert response.status == 201, await response.text()
    [message] = await outbox(journal)
    record = valid_form("cleaningEffectTesting", message["payload"])
    assert record["testingTime"] == "2026-11-23 10:00:00" and "pic3" not in record
    assert await journal.run(open_alerts) == []


async def test_every_problem_is_listed(client, journal):
    body = {
        "ratio_number": "",
        "disinfectant": "bleach",
        "duration_minutes": 0,
        "tested_at": "2999-01-01T00:00:00Z",
        "passed": "maybe",
        "recorded_by": "x",
        "colour": "blue",
        "photos": ["@@@"],
    }
    response = await client.post(DISINFECTANT, json=body, headers=AUTH)
    assert response.status == 422
    found = (await response.json())["problems"]
    assert [p.split(":")[0] for p in found] == [
        "ratio_number",
        "disinfectant",
        "duration_minutes",
        "tested_at",
        "frequency",
        "passed",
        "colour",
        "photo 1",
    ]
    assert await outbox(journal) == []


@pytest.mark.parametrize(
    ("photos", "problem"),
    [
        ([], "photo: at least 1 required"),
        ([JPEG] * 4, "photo: at most 3 allowed"),
        ([b"GIF89a" + bytes(20)], "photo 1: not a JPEG or PNG image"),
        ([PNG, b"%PDF-1.4"], "photo 2: not a JPEG or PNG image"),
    ],
)
async def test_photo_count_and_type_are_checked(client, journal, photos_dir, photos, problem):
    fields = {"scope": "GIF-001", "inspector": "N002", "passed": "true"}
    response = await client.post(CLEANING, data=form(fields, photos), headers=AUTH)
    assert response.status == 422
    assert (await response.json())["problems"] == [problem]
    assert await outbox(journal) == [] and not photos_dir.exists()


async def test_rinse_water_takes_no_photos(client):
    fields = {"device": "WTE-01", "status": "normal", "recorded_by": "N001"}
    response = await client.post(RINSE, data=form(fields, [PNG]), headers=AUTH)
    assert (await response.json())["problems"] == ["photo: at most 0 allowed"]


@pytest.mark.parametrize("as_json", [False, True])
async def test_oversize_photo_is_413_and_nothing_is_journaled(client, journal, photos_dir, as_json):
    fields = {"scope": "GIF-001", "inspector": "N002", "passed": "true"}
    if as_json:
        body = {**fields, "photos": [base64.b64encode(BIG).decode()]}
        response = await client.post(CLEANING, json=body, headers=AUTH)
    else:
        response = await client.post(CLEANING, data=form(fields, [PNG, BIG]), headers=AUTH)
    assert response.status == 413
    assert await table(journal, "SELECT id FROM events") == []
    assert await outbox(journal) == [] and not photos_dir.exists()


@pytest.mark.parametrize("path", [DISINFECTANT, RINSE, CLEANING, "/api/v1/quality/photos/x.png"])
async def test_no_token_is_401(client, journal, path):
    if path.startswith("/api/v1/quality/photos"):
        response = await client.get(path)
    else:
        response = await client.post(path, json=DISINFECTANT_TEST)
    assert response.status == 401
    assert await table(journal, "SELECT id FROM events") == []


async def test_an_urlencoded_html_form_without_photo_is_accepted(client, journal):
    body = "device=WTE-01&status=normal&filter=&recorded_by=%E7%8E%8B"
    headers = {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}
    response = await client.post(RINSE, data=body, headers=headers)
    assert response.status == 201, await response.text()
    [row] = await table(journal, "SELECT recorded_by FROM quality_tests")
    assert row["recorded_by"] == "王"


async def test_unsupported_body_is_415(client):
    response = await client.post(
        RINSE, data=b"device=WTE-01", headers={**AUTH, "Content-Type": "text/plain"}
    )
    assert response.status == 415


@pytest.mark.parametrize(
    "name",
    [
        "..%2Fjournal.db",
        "..%2F..%2Fjournal.db",
        "%2E%2E%2Fjournal.db",
        "A" * 64 + ".jpg",
        "a" * 64 + ".gif",
        "a" * 63 + ".jpg",
        "a" * 64 + ".jpg.png",
    ],
)
async def test_photo_names_are_strict_and_traversal_is_refused(client, name):
    url = URL(str(client.make_url("/api/v1/quality/photos/")) + name, encoded=True)
    response = await client.session.get(url, headers=AUTH)
    assert response.status == 404
    assert b"SQLite" not in await response.read()


async def test_unknown_photo_is_404(client):
    response = await client.get(f"/api/v1/quality/photos/{'b' * 64}.png", headers=AUTH)
    assert response.status == 404


async def test_records_reach_the_platform_simulator(
    client, journal, zhejiang_platform: ZhejiangEndoscopeSimulator
):
    uplink = ZhejiangEndoscopeUplink(UPLINK, uplink_config(zhejiang_platform.base_url))
    bodies: list[tuple[str, Any]] = [
        (DISINFECTANT, {"json": DISINFECTANT_TEST}),
        (
            RINSE,
            {
                "json": {
                    "device": "WTE-01",
                    "status": "normal",
                    "filter": "normal",
                    "recorded_by": "N1",
                }
            },
        ),
        (
            CLEANING,
            {"data": form({"scope": "GIF-001", "inspector": "N2", "passed": "1"}, [JPEG, PNG])},
        ),
    ]
    async with dispatching(journal, uplink):
        for path, body in bodies:
            response = await client.post(path, headers=AUTH, **body)
            assert response.status == 201, await response.text()
        await eventually(lambda: settled(journal))
    accepted = zhejiang_platform.received.accepted
    assert zhejiang_platform.received.refused == []
    [disinfect] = accepted["uploadDisinfectData"]
    [rinse] = accepted["rinseWater"]
    [cleaning] = accepted["cleaningEffectTesting"]
    assert (disinfect["ratioNumber"], disinfect["disinfectantConc"], disinfect["result"]) == (
        "OPA-2611-01",
        "1",
        "1",
    )
    assert (rinse["wteNumber"], rinse["status"], rinse["dfcwStatus"]) == ("WTE-01", "1", "1")
    assert cleaning["pic1"].startswith(BASE_URL) and cleaning["pic2"].endswith(".png")
    assert cleaning["testingTime"][:4] == str(datetime.now(UTC).year)[:4]
