"""Seed 001's lab side and sharing records: what the LIS and HIS post on the local API is
validated, journaled before the 201, and uploaded by the mapping (report, then its results,
then its PDF); the simulator accepts each by the same mapping."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from agent.config import ApiSection
from agent.journal.writer import Journal
from agent.lab.config import LabConfig
from agent.lab.handler import LabHandler
from agent.plugins import UPLINKS
from agent.simulators.results_sharing import ResultsSharingSimulator
from agent.uplinks.results_sharing.uplink import ResultsSharingUplink
from agent.web.api import make_app
from tests.dispatching import outbox_rows, run_dispatcher
from tests.helpers import eventually
from tests.integration.test_results_sharing import FAST, PDF, settled, sharing, start_platform

TOKEN = "lab-api-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PATIENT = {"id": "P100", "name": "李四", "sex": "female", "birth_date": "1975-03-02"}


def lab_report(number: str = "L1", audited: bool = True, **changes: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "report_no": number,
        "patient": PATIENT,
        "specimen_type": "血清",
        "item_code": "BIO01",
        "item_name": "肝功能",
        "reported_at": "2026-12-06 09:00:00",
        "results": [
            {"item_code": "ALT", "item_name": "丙氨酸氨基转移酶", "value": "56", "unit": "U/L",
             "reference_range": "7-40", "flag": "high"},
            {"item_code": "AST", "item_name": "天门冬氨酸氨基转移酶", "value": "30",
             "unit": "U/L", "reference_range": "13-35"},
        ],
        **changes,
    }  # fmt: skip
    if audited:
        report["audited_at"] = "2026-12-06 10:00:00"
    return report


@pytest.fixture
async def platform() -> AsyncIterator[ResultsSharingSimulator]:
    simulator = await start_platform()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def agent(open_journal, tmp_path) -> AsyncIterator[tuple[Journal, TestClient[Any, Any]]]:
    plans = {"sharing": UPLINKS["results_sharing"].plan}
    lab = LabConfig.model_validate(
        {"type": "lab", "forward_to": ["sharing"]}, context={"uplink_plans": plans}
    )
    journal: Journal = await open_journal.open(handlers=(LabHandler("lab", lab),))

    async def emit(event: Any) -> bool:
        return (await journal.ingest([event]))[0]

    settings = ApiSection(enabled=True, token=SecretStr(TOKEN))
    app = make_app(settings, emit, journal.run, exam_files_dir=tmp_path / "exam-files")
    async with TestClient(TestServer(app)) as client:
        yield journal, client


async def post(client: TestClient[Any, Any], path: str, body: Any) -> dict[str, Any]:
    answer = await client.post(path, json=body, headers=AUTH)
    assert answer.status == 201, await answer.text()
    return dict(await answer.json())


async def test_a_lab_report_its_results_and_its_pdf_arrive_in_order_with_standard_codes(
    platform, agent, tmp_path
):
    journal, client = agent
    csv = (
        "domain,local_code,local_name,platform_code,platform_name\n"
        "lab,ALT,丙氨酸氨基转移酶,LAB0001,ALT\nexam,CT01,胸部CT平扫,EX0001,胸部CT\n"
    )
    answer = await client.post(
        "/api/v1/lab/catalogue", data=csv.encode(), headers={**AUTH, "Content-Type": "text/csv"}
    )
    assert answer.status == 201 and (await answer.json())["items"] == 2
    pdf = await client.post(
        "/api/v1/lab/reports/L1/files",
        data=PDF,
        headers={**AUTH, "Content-Type": "application/pdf"},
    )
    assert pdf.status == 201  # before the report: uploaded after it
    await post(client, "/api/v1/lab/reports", lab_report(audited=False))
    assert [r["kind"] for r in (await outbox_rows(journal)).values()] == ["item.codes"]
    await post(client, "/api/v1/lab/reports", lab_report())
    uplink = ResultsSharingUplink("sharing", sharing(platform.base_url, tmp_path / "exam-files"))
    async with run_dispatcher(journal, uplink, FAST):
        rows = await eventually(lambda: settled(journal, 4))
    assert {r["state"] for r in rows} == {"delivered"}, rows
    sent = [name for name, _ in platform.received.uploads]
    lab = [n for n in sent if n.startswith("uploadLab")]
    assert lab == ["uploadLabReport", "uploadLabResults", "uploadLabReportPdf"]
    assert "uploadItemCodes" in sent
    report = platform.received.records["uploadLabReport"]["XC0001|L1"]
    assert report["sexCode"] == "2" and report["auditTime"] == "2026-12-06 10:00:00"
    results = platform.received.records["uploadLabResults"]["XC0001|L1"]["results"]
    assert [(r["itemCode"], r.get("standardCode"), r["abnormalFlag"]) for r in results] == [
        ("ALT", "LAB0001", "H"),
        ("AST", None, "N"),
    ]
    assert platform.received.files == {hashlib.sha256(PDF).hexdigest(): len(PDF)}
    codes = platform.received.records["uploadItemCodes"]["XC0001"]["items"]
    assert {c["standardCode"] for c in codes} == {"LAB0001", "EX0001"}


async def test_devices_qc_recognitions_and_viewings_are_uploaded_once_each(
    platform, agent, tmp_path
):
    journal, client = agent
    device = {"device_code": "DEV1", "name": "生化分析仪", "model": "AU5800"}
    await post(client, "/api/v1/lab/devices", device)
    await post(client, "/api/v1/lab/devices", device)  # unchanged: not sent again
    await post(
        client,
        "/api/v1/lab/qc",
        {"run_id": "Q1", "device_code": "DEV1", "item_code": "ALT", "item_name": "ALT",
         "level": "L1", "value": "41", "result": "in_control", "run_at": "2026-12-06 08:00:00"},
    )  # fmt: skip
    recognition = {
        "record_id": "R1", "domain": "lab", "patient": PATIENT, "other_org_code": "XC0002",
        "other_report_no": "X9", "item_code": "BIO01", "item_name": "肝功能",
        "decision": "accepted", "doctor": "王医生", "decided_at": "2026-12-06 11:00:00",
    }  # fmt: skip
    await post(client, "/api/v1/sharing/recognitions", recognition)
    await post(client, "/api/v1/sharing/recognitions", {**recognition, "record_id": "R2",
               "domain": "exam", "decision": "refused", "reason": "图像不清晰"})  # fmt: skip
    viewing = {
        "record_id": "V1", "kind": "viewing", "domain": "exam", "patient": PATIENT,
        "doctor": "王医生", "at": "2026-12-06 11:05:00",
    }  # fmt: skip
    await post(client, "/api/v1/sharing/viewings", viewing)
    uplink = ResultsSharingUplink("sharing", sharing(platform.base_url, tmp_path))
    async with run_dispatcher(journal, uplink, FAST):
        rows = await eventually(lambda: settled(journal, 5))
    assert {r["state"] for r in rows} == {"delivered"}, rows
    assert sorted(name for name, _ in platform.received.uploads) == [
        "uploadExamRecognition",
        "uploadLabDevice",
        "uploadLabQc",
        "uploadLabRecognition",
        "uploadViewingRecord",
    ]
    refused = platform.received.records["uploadExamRecognition"]["XC0001|R2"]
    assert refused["recognized"] == "0" and refused["reason"] == "图像不清晰"


async def test_bad_inputs_are_refused_with_every_problem_and_nothing_journaled(agent):
    journal, client = agent
    bad = lab_report(results=[], reported_at="2026-13-01 00:00:00")
    answer = await client.post("/api/v1/lab/reports", json=bad, headers=AUTH)
    assert answer.status == 422
    text = await answer.text()
    assert "results" in text and "reported_at" in text
    csv = "domain,local_code,local_name,platform_code,platform_name\nlab,ALT,,P1,\nx,Y,Z,P,\n"
    answer = await client.post(
        "/api/v1/lab/catalogue", data=csv.encode(), headers={**AUTH, "Content-Type": "text/csv"}
    )
    assert answer.status == 422
    problems = (await answer.json())["problems"]
    assert any(p.startswith("line 2: local_name") for p in problems), problems
    assert any(p.startswith("line 3: domain") for p in problems), problems
    not_pdf = await client.post(
        "/api/v1/lab/reports/L9/files", data=b"\xff\xd8\xff", headers={**AUTH,
        "Content-Type": "application/pdf"},
    )  # fmt: skip
    assert not_pdf.status == 422
    events = await journal.run(lambda conn: conn.execute("SELECT COUNT(*) FROM events").fetchone())
    assert events == (0,)
