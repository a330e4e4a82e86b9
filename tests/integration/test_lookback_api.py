"""Lookback on the local API: token required, patient masked unless full, every run audited."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from agent.cli import main
from agent.config import ApiSection
from agent.reprocessing.handler import ReprocessingHandler
from agent.reprocessing.lookback import LookbackAudit
from agent.toml_out import dumps
from agent.web.api import make_app
from tests.unit.test_reprocessing import Centre, make_config

TOKEN = "api-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ASK = {"kind": "scope", "subject": "00D507D0", "since": "2026-11-01", "by": "感控 李"}


@pytest.fixture
async def centre(open_journal, tmp_path) -> Centre:
    config = make_config()
    journal = await open_journal.open(
        handlers=(ReprocessingHandler("endo", config), LookbackAudit())
    )
    centre = Centre(journal, tmp_path / "journal.db")
    await centre.cycle()
    await centre.tap("R9", "PAT-20261123-0042")
    await centre.tap("R9", "00D507D0")
    return centre


@pytest.fixture
async def client(centre) -> AsyncIterator[TestClient[Any, Any]]:
    async def emit(event):
        return (await centre.journal.ingest([event]))[0]

    settings = ApiSection(enabled=True, token=SecretStr(TOKEN), max_body=1024)
    app = make_app(settings, emit, centre.journal.run, reprocessing=[make_config()])
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def audit(centre: Centre) -> list[tuple[str, str, str]]:
    with sqlite3.connect(centre.path) as conn:
        return conn.execute("SELECT actor, action, target FROM audit ORDER BY id").fetchall()


async def test_scope_lookback_by_rfid_masks_the_patient_and_is_audited(client, centre):
    response = await client.get("/api/v1/lookback", params=ASK, headers=AUTH)
    assert response.status == 200
    found = await response.json()
    (entry,) = found["entries"]
    assert entry["use"]["scope"] == "GIF-001"
    assert entry["use"]["patient_id"] == "*************0042"
    assert entry["cycle"]["steps"][0]["kind"] == "pre_clean"
    assert audit(centre) == [("感控 李", "lookback.scope", "scope:GIF-001")]


async def test_full_csv_export_names_the_patient_for_the_token_holder(client, centre):
    params = {**ASK, "format": "csv", "full": "true"}
    response = await client.get("/api/v1/lookback", params=params, headers=AUTH)
    assert response.status == 200 and response.content_type == "text/csv"
    text = await response.text()
    assert text.startswith("\ufeff内镜编号") and "PAT-20261123-0042" in text
    assert len(audit(centre)) == 1


async def test_an_unknown_format_or_full_is_refused_before_anything_is_audited(client, centre):
    for params in (
        {**ASK, "format": "xml"},
        {**ASK, "full": "yes"},
        [*ASK.items(), ("format", "csv"), ("format", "json")],
    ):
        response = await client.get("/api/v1/lookback", params=params, headers=AUTH)
        assert response.status == 400
    assert audit(centre) == []


async def test_without_the_token_or_without_a_name_nothing_is_answered(client, centre):
    assert (await client.get("/api/v1/lookback", params=ASK)).status == 401
    response = await client.get(
        "/api/v1/lookback", params={"kind": "washer", "subject": "W1"}, headers=AUTH
    )
    assert response.status == 422
    problems = (await response.json())["problems"]
    assert any(p.startswith("by:") for p in problems)
    unanswerable = {**ASK, "kind": "washer", "subject": "W1"}  # no period
    assert (await client.get("/api/v1/lookback", params=unanswerable, headers=AUTH)).status == 422
    assert [row[1] for row in audit(centre)] == ["lookback.washer"]  # asked, though unanswered


def test_cli_lookback_prints_masked_rows_exports_full_csv_and_audits(centre, capsys):
    state = centre.path.parent
    config = state / "agent.toml"
    domain = make_config().model_dump(mode="json", exclude_none=True)
    config.write_text(
        dumps(
            {
                "agent": {"state_dir": str(state)},
                "uplinks": {"zj": {"type": "http", "url": "https://c.example/"}},
                "domains": {"endo": domain},
            }
        ),
        encoding="utf-8",
    )
    common = ["lookback", "-c", str(config), "--actor", "li"]
    assert main([*common, "scope", "00D507D0", "--since", "2026-11-01"]) == 0
    out = capsys.readouterr().out
    assert "GIF-001" in out and "*************0042" in out and "PAT-20261123" not in out
    export = state / "lookback.csv"
    assert main([*common, "patient", "PAT-20261123-0042", "--csv", str(export), "--full"]) == 0
    assert "PAT-20261123-0042" in export.read_text(encoding="utf-8")
    assert main([*common, "washer", "W1"]) == 1  # a washer lookback needs a period
    assert [row[:2] for row in audit(centre)] == [
        ("li", "lookback.scope"),
        ("li", "lookback.patient"),
        ("li", "lookback.washer"),  # asked, though unanswerable
    ]
