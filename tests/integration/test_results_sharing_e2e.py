"""Issue 19 acceptance, with a real agent: an exam with its report and PDF, and a lab report with
its results and PDF, reach the results-sharing platform in order through a SIGKILL and the
platform being down; another hospital then downloads the study through the gate, byte for byte,
and a doctor station's query is answered."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
from pydicom import dcmread

from agent import toml_out
from agent.simulators.results_sharing import (
    ResultsSharingSimulator,
    ResultsSharingSimulatorConfig,
)
from tests.dicom_files import by_storescu_options, make_study
from tests.integration.test_remote_imaging import dataset_bytes
from tests.integration.test_results_sharing import PDF
from tests.integration.test_results_sharing_lab import lab_report
from tests.mosquitto import free_port
from tests.peers import dcmtk
from tests.watched_agent import WatchedAgent

TOKEN = "sharing-e2e-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT = 60.0
ACCESSION, PATIENT = "ACC2026120701", "P0088"


def write_config(
    tmp_path: Path, platform: ResultsSharingSimulator, ports: dict[str, int], **sharing: Any
) -> Path:
    config = {
        "agent": {"state_dir": "state", "shutdown_timeout": 1.0, "stats_interval": 0},
        "log": {"format": "json", "level": "info"},
        "api": {"enabled": True, "port": ports["api"], "token": TOKEN},
        "sources": {
            "pacs": {
                "type": "dicom_scp", "ae_title": "EDGE_AGENT", "host": "127.0.0.1",
                "port": ports["dicom"], "allowed_calling_aes": ["CT01"], "min_free_mb": 1,
            }
        },
        "domains": {
            "imaging": {"type": "imaging", "quiet_seconds": 0.5, "scan_interval": 0.1,
                        "forward_to": ["sharing"]},
            "lab": {"type": "lab", "forward_to": ["sharing"]},
        },
        "uplinks": {
            "sharing": {
                "type": "results_sharing", "base_url": platform.base_url,
                "app_id": "edge-agent", "app_secret": "simulator-secret", "org_code": "XC0001",
                "request_timeout": 2.0, "retry_base": 0.05, "retry_cap": 0.5,
                "breaker_open_seconds": 0.3, "concurrency": 2,
                "gate": {
                    "listener": {"enabled": True, "port": ports["gate"],
                                 "allow": ["127.0.0.1/32"]},
                    "viewer_redirect": "http://pacs.local/viewer?study={study_uid}",
                },
                **sharing,
            }
        },
    }  # fmt: skip
    path = tmp_path / "agent.toml"
    path.write_text(toml_out.dumps(config), encoding="utf-8")
    return path


def exam(status: str, study_uid: str) -> dict[str, Any]:
    report: dict[str, Any] = {"impression": "右下肺炎症。", "reportTime": "2026-12-07 10:00:00"}
    if status == "70":
        report |= {"affirmReporter": "钱主任", "affirmTime": "2026-12-07 10:30:00"}
    return {
        "examNo": "E20261207009",
        "accessionNo": ACCESSION,
        "studyUID": study_uid,
        "patientInfo": {"sickId": PATIENT, "name": "张三", "sex": "男"},
        "examInfo": {
            "applyNo": "A0009", "examStatus": status, "examTime": "2026-12-07 09:00:00",
            "examClass": "CT", "examItemList": [{"itemCode": "CT01", "itemName": "胸部CT平扫"}],
            "examOrganList": [{"organName": "胸部"}],
        },
        "reportList": report,
    }  # fmt: skip


async def post(port: int, path: str, body: Any, content_type: str = "") -> dict[str, Any]:
    headers = {**AUTH, **({"Content-Type": content_type} if content_type else {})}
    sent = {"data": body} if isinstance(body, bytes) else {"json": body}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"http://127.0.0.1:{port}{path}", headers=headers, **sent) as answer,
    ):
        assert answer.status in (200, 201), await answer.text()
        return dict(await answer.json())


async def test_everything_arrives_in_order_through_a_sigkill_and_an_outage(tmp_path):
    storescu = dcmtk("storescu")
    files = make_study(tmp_path / "study", PATIENT, series=(("CT", 3),), accession=ACCESSION)
    study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    ports = {name: free_port() for name in ("api", "dicom", "gate")}
    platform = ResultsSharingSimulator(
        "platform", ResultsSharingSimulatorConfig(type="results_sharing", port=0)
    )
    await platform.start()
    config = write_config(tmp_path, platform, ports)
    agent = WatchedAgent(config, tmp_path)
    try:
        await agent.start()
        await agent.wait_log(lambda line: line.get("event") == "dicom.scp_listening")
        target = ["-aet", "CT01", "-aec", "EDGE_AGENT", "127.0.0.1", str(ports["dicom"])]
        for options, group in by_storescu_options(files):
            stored = await asyncio.to_thread(
                subprocess.run, [storescu, *options, *target, *map(str, group)],
                capture_output=True, text=True, timeout=WAIT, check=False,
            )  # fmt: skip
            assert stored.returncode == 0, stored.stderr
        api = ports["api"]
        await post(api, "/api/v1/exams", exam("60", study_uid))
        await platform.go_down("refuse")
        await post(api, "/api/v1/exams", exam("70", study_uid))  # audited: index queued
        await post(api, "/api/v1/exams/E20261207009/files", PDF, "application/pdf")
        await post(api, "/api/v1/lab/reports", lab_report("L9"))
        await post(api, "/api/v1/lab/reports/L9/files", PDF, "application/pdf")
        await agent.wait_log(lambda line: line.get("event") == "uplink.unavailable")
        await agent.kill()  # SIGKILL with five messages queued
        agent = WatchedAgent(config, tmp_path)
        await agent.start()
        await platform.come_up()
        async with asyncio.timeout(WAIT):
            await platform.wait_until(lambda r: len(r.uploads) >= 5)

        key = platform.issue_key("download", study_uid)
        found = await platform.download_study(f"http://127.0.0.1:{ports['gate']}", study_uid)
        by_sop = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in files}
        got = {}
        for n, (sop, data) in enumerate(sorted(found.items())):
            (tmp_path / f"got-{n}.dcm").write_bytes(data)
            got[sop] = dataset_bytes(tmp_path / f"got-{n}.dcm")
        # The modality's dataset as it sent it (the spool's file meta is the agent's own).
        assert got == {sop: dataset_bytes(path) for sop, path in by_sop.items()}
        async with aiohttp.ClientSession() as http:
            wado = {"requestType": "WADO", "studyUID": study_uid, "downloadKey": "forged",
                    "seriesUID": "1.2", "objectUID": "1.2.3"}  # fmt: skip
            async with http.get(f"http://127.0.0.1:{ports['gate']}/wado", params=wado) as a:
                assert a.status == 403
        answer = await post(api, "/api/v1/sharing/queries/exams",
                            {"id_card_no": "340102198001011234"})  # fmt: skip
        assert answer == {"source": "platform", "data": []}
        assert await agent.stop() == 0
    finally:
        if agent.proc is not None and agent.proc.returncode is None:
            await agent.kill()
        await platform.stop()
    sent = [(name, body.get("examNo") or body.get("reportNo")) for name, body in
            platform.received.uploads]  # fmt: skip
    assert sent.count(("uploadExamIndex", "E20261207009")) == 1
    assert sent.index(("uploadExamIndex", "E20261207009")) < sent.index(
        ("uploadExamReportPdf", "E20261207009")
    )
    lab = [name for name, number in sent if number == "L9"]
    assert lab == ["uploadLabReport", "uploadLabResults", "uploadLabReportPdf"]
    assert platform.received.files == {hashlib.sha256(PDF).hexdigest(): len(PDF)}
    assert key not in "\n".join(agent.lines)  # no key in any log line


def indexed_exam(number: str) -> dict[str, Any]:
    """An audited exam without images: only its index goes to the platform."""
    body = exam("70", "1.2.826.0.1.3680043.8.498.77")
    body["examNo"] = number
    body["examInfo"] = {**body["examInfo"], "applyNo": f"A-{number}"}
    return body


async def test_the_next_reconciliation_resends_exactly_the_two_records_the_platform_lost(
    tmp_path,
):
    ports = {name: free_port() for name in ("api", "dicom", "gate")}
    platform = ResultsSharingSimulator(
        "platform", ResultsSharingSimulatorConfig(type="results_sharing", port=0)
    )
    await platform.start()
    platform.faults.lose_next = 2  # answered 200, kept nowhere
    # Reported at 00:00 so that any moment is past it; two days looked back, so a run across
    # midnight still finds today's deliveries.
    daily = {"daily_report_time": "00:00", "daily_catch_up_days": 2, "daily_recheck_after": 0.1}
    config = write_config(tmp_path, platform, ports, **daily)
    agent = WatchedAgent(config, tmp_path)
    numbers = [f"E2026120810{n}" for n in range(5)]
    try:
        await agent.start()
        for number in numbers:
            await post(ports["api"], "/api/v1/exams", indexed_exam(number))
        async with asyncio.timeout(WAIT):
            await platform.wait_until(lambda r: len(r.uploads) + len(r.lost) >= 5)
        assert platform.received.checks == []  # today is not due before tomorrow
        assert await agent.stop() == 0
        # The next reconciliation: the agent restarted on a clock one day ahead reconciles
        # today as its "yesterday", at start.
        config = write_config(tmp_path, platform, ports, **daily, daily_clock_offset=86400.0)
        agent = WatchedAgent(config, tmp_path)
        await agent.start()
        async with asyncio.timeout(WAIT):
            await platform.wait_until(lambda r: len(r.checks) >= 2)
        assert await agent.stop() == 0
    finally:
        if agent.proc is not None and agent.proc.returncode is None:
            await agent.kill()
        await platform.stop()
    lost = sorted(body["examNo"] for _, body in platform.received.lost)
    assert len(lost) == 2
    indexes = [b["examNo"] for n, b in platform.received.uploads if n == "uploadExamIndex"]
    assert len(indexes) == 5 and sorted(indexes[-2:]) == lost  # 3 kept at once, then the 2
    assert sorted(platform.received.records["uploadExamIndex"]) == [f"XC0001|{n}" for n in numbers]
    assert [len(check["missing"]) for check in platform.received.checks] == [2, 0]
    report = next(b for n, b in platform.received.uploads if n == "uploadDailyReport")
    assert report["items"] == [{"interface": "uploadExamIndex", "count": 5}]
