"""Issue 17 acceptance: storescu → a real agent → the insurance cloud's front-end, through a
SIGKILL and the front-end being down.

dcmtk `storescu` sends a two-series study; RIS posts the exam, then audits its report while the
front-end is down, and the agent is killed (SIGKILL) with the QR request queued. After the
restart the front-end comes back and gets the QR request once. The front-end then finds the exam
by each time type and by number, fetches its images by link and pulls them by C-MOVE, byte for
byte; PACS deletes a series, the front-end is told, and the series is found nowhere any more.
"""

from __future__ import annotations

import asyncio
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from pydicom import dcmread

from agent import toml_out
from agent.simulators.insurance_imaging import (
    InsuranceImagingSimulator,
    InsuranceImagingSimulatorConfig,
)
from tests.dicom_files import by_storescu_options, make_study
from tests.integration.test_remote_imaging import dataset_bytes
from tests.mosquitto import free_port
from tests.peers import dcmtk
from tests.watched_agent import WatchedAgent

TOKEN = "insurance-e2e-token-0123456789"
WAIT = 60.0
ACCESSION, PATIENT = "ACC20261207", "P0077"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def write_config(tmp_path: Path, front: InsuranceImagingSimulator, ports: dict[str, int]) -> Path:
    listener = f"http://127.0.0.1:{ports['listener']}"
    config = {
        "agent": {"state_dir": "state", "shutdown_timeout": 1.0, "stats_interval": 0},
        "log": {"format": "json", "level": "info"},
        "api": {"enabled": True, "port": ports["api"], "token": TOKEN},
        "sources": {
            "pacs": {
                "type": "dicom_scp",
                "ae_title": "EDGE_AGENT",
                "host": "127.0.0.1",
                "port": ports["dicom"],
                "allowed_calling_aes": ["CT01", front.config.portal_ae],
                "move_destinations": {
                    front.config.portal_ae: {"host": "127.0.0.1", "port": front.config.portal_port}
                },
                "min_free_mb": 1,
            }
        },
        "domains": {
            "imaging": {
                "type": "imaging",
                "quiet_seconds": 0.5,
                "scan_interval": 0.1,
                "forward_to": ["insurance"],
            }
        },
        "uplinks": {
            "insurance": {
                "type": "insurance_imaging",
                "hospital_id": front.config.hospital_id,
                "frontend_url": front.url,
                "request_timeout": 2.0,
                "retry_base": 0.05,
                "retry_cap": 0.5,
                "breaker_open_seconds": 0.3,
                "listener": {"enabled": True, "port": ports["listener"], "allow": ["127.0.0.1/32"]},
                "wado": {"enabled": True, "base_url": listener},
                "qr": {"enabled": True},
                "deletion": {"enabled": True, "url": f"{front.url}{front.config.deletion_path}"},
            }
        },
    }
    path = tmp_path / "agent.toml"
    path.write_text(toml_out.dumps(config), encoding="utf-8")
    return path


def exam(status: str) -> dict[str, Any]:
    report: dict[str, Any] = {"impression": "右下肺炎症。", "reportTime": "2026-12-07 10:00:00"}
    if status == "70":
        report |= {"affirmReporter": "钱主任", "affirmTime": "2026-12-07 10:30:00"}
    return {
        "examNo": "E20261207001",
        "accessionNo": ACCESSION,
        "patientInfo": {"sickId": PATIENT, "name": "张三", "sex": "男"},
        "examInfo": {
            "applyNo": "A0001",
            "examStatus": status,
            "examTime": "2026-12-07 09:00:00",
            "examClass": "CT",
            "examItemList": [{"itemName": "胸部CT平扫"}],
            "examOrganList": [{"organName": "胸部"}],
        },
        "reportList": report,
    }


async def post(port: int, path: str, body: dict[str, Any]) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"http://127.0.0.1:{port}{path}", json=body, headers=AUTH) as answer,
    ):
        assert answer.status == 201, await answer.text()


async def test_the_front_end_gets_everything_through_a_sigkill_and_an_outage(tmp_path):
    storescu = dcmtk("storescu")
    files = make_study(
        tmp_path / "study", PATIENT, series=(("CT", 6), ("CT", 4)), accession=ACCESSION
    )
    ports = {name: free_port() for name in ("api", "dicom", "listener")}
    front = InsuranceImagingSimulator(
        "insurance",
        InsuranceImagingSimulatorConfig(
            type="insurance_imaging",
            port=0,
            portal_port=free_port(),
            report_url=f"http://127.0.0.1:{ports['listener']}/pacs/reportInfo",
        ),
    )
    await front.start()
    config = write_config(tmp_path, front, ports)
    agent = WatchedAgent(config, tmp_path)
    try:
        await agent.start()
        await agent.wait_log(lambda line: line.get("event") == "dicom.scp_listening")
        target = ["-aet", "CT01", "-aec", "EDGE_AGENT", "127.0.0.1", str(ports["dicom"])]
        for options, group in by_storescu_options(files):
            sent = await asyncio.to_thread(
                subprocess.run, [storescu, *options, *target, *map(str, group)],
                capture_output=True, text=True, timeout=WAIT, check=False,
            )  # fmt: skip
            assert sent.returncode == 0, sent.stderr
        await post(ports["api"], "/api/v1/exams", exam("60"))
        await front.go_down("refuse")
        await post(ports["api"], "/api/v1/exams", exam("70"))  # audited: a QR request queued
        await agent.wait_log(lambda line: line.get("event") == "uplink.unavailable")
        await agent.kill()
        agent = WatchedAgent(config, tmp_path)
        await agent.start()
        await front.come_up()
        async with asyncio.timeout(WAIT):
            await front.wait_until(lambda r: len(r.qr) >= 1)

        day = {"startTime": "2026-12-07 00:00:00", "endTime": "2026-12-07 23:59:59"}
        now = datetime.now(ZoneInfo("Asia/Shanghai"))  # type 4: when the agent stored the change
        recent = {"startTime": f"{now - timedelta(hours=1):%Y-%m-%d %H:%M:%S}",
                  "endTime": f"{now + timedelta(hours=1):%Y-%m-%d %H:%M:%S}"}  # fmt: skip
        for kind, window in ((1, day), (3, day), (4, recent)):
            found = await front.poll({**window, "type": kind})
            assert [r["examNo"] for r in found["data"]] == ["E20261207001"], (kind, found)
        assert (await front.poll({**day, "type": 2}))["data"] == []  # nothing refunded
        (record,) = (await front.poll({"accessionNo": ACCESSION}))["data"]
        by_sop = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in files}
        linked = {}
        for n, link in enumerate(record["imagePath"]):
            got = tmp_path / f"linked-{n}.dcm"
            got.write_bytes(await front.fetch(link))
            linked[str(dcmread(got, stop_before_pixels=True).SOPInstanceUID)] = dataset_bytes(got)
        assert linked == {sop: dataset_bytes(path) for sop, path in by_sop.items()}
        study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        pulled = await front.pull("127.0.0.1", ports["dicom"], "EDGE_AGENT", study_uid)
        assert pulled.status == 0x0000 and pulled.echo == 0x0000
        assert {sop: dataset_bytes(path) for sop, path in by_sop.items()} == pulled.images

        second = str(dcmread(files[-1], stop_before_pixels=True).SeriesInstanceUID)
        body = {"by": "赵医生", "series_uids": [second]}
        await post(ports["api"], f"/api/v1/exams/{ACCESSION}/deletions", body)
        async with asyncio.timeout(WAIT):
            await front.wait_until(lambda r: len(r.notices) == 1)
        kept = {s: p for s, p in by_sop.items() if dcmread(p).SeriesInstanceUID != second}
        (record,) = (await front.poll({"accessionNo": ACCESSION}))["data"]
        assert len(record["imagePath"]) == len(kept)
        again = await front.pull("127.0.0.1", ports["dicom"], "EDGE_AGENT", study_uid)
        assert again.images.keys() == kept.keys()
        assert await agent.stop() == 0
    finally:
        if agent.proc is not None and agent.proc.returncode is None:
            await agent.kill()
        await front.stop()
    assert len(front.received.qr) == 1  # asked once, although the agent died with it queued
    assert front.received.notices[0]["accessionNo"] == ACCESSION
