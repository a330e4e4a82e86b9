"""Issue 5 acceptance: storescu → the agent → the city platform, through a SIGKILL and an outage.

A real agent process receives a two-series study from dcmtk `storescu` and the exam's report
from the local API. The city platform's simulator accepts the push, then holds a C-STORE; the
agent is killed (SIGKILL) with that C-STORE in flight and the platform goes down; the agent
restarts while the platform is away, and the platform comes back. In the end the platform has
the push first and every instance, byte-identical in its data set, with the tag checks passed.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
from pydicom import dcmread

from agent import toml_out
from agent.simulators.remote_imaging import RemoteImagingSimulator
from tests.dicom_files import by_storescu_options, make_study
from tests.integration.test_remote_imaging import city_platform, dataset_bytes
from tests.mosquitto import free_port
from tests.peers import dcmtk
from tests.unit.test_remote_imaging_codec import APP_ID, HOSPITAL, LICENSE, ORG_ID
from tests.watched_agent import WatchedAgent

TOKEN = "imaging-e2e-token-0123456789"
WAIT = 60.0  # any single wait; a hang fails instead of blocking the suite
ACCESSION, PATIENT = "ACC20261123", "P0042"


def write_config(tmp_path: Path, platform: RemoteImagingSimulator, ports: dict[str, int]) -> Path:
    config = {
        "agent": {"state_dir": "state", "shutdown_timeout": 1.0, "stats_interval": 0},
        "log": {"format": "json", "level": "info"},
        "api": {"enabled": True, "port": ports["api"], "token": TOKEN},
        "sources": {
            "pacs_in": {
                "type": "dicom_scp",
                "ae_title": "EDGE_AGENT",
                "host": "127.0.0.1",
                "port": ports["dicom"],
                "allowed_calling_aes": ["CT01"],
                "min_free_mb": 1,
            }
        },
        "domains": {
            "imaging": {
                "type": "imaging",
                "quiet_seconds": 0.5,
                "scan_interval": 0.1,
                "forward_to": ["city"],
            }
        },
        "uplinks": {
            "city": {
                "type": "remote_imaging",
                "base_url": platform.base_url,
                "app_id": APP_ID,
                "org_id": ORG_ID,
                "license": LICENSE,
                "public_key": platform.public_key,
                "hospital_code": HOSPITAL,
                "hospital_name": "测试县人民医院",
                "dicom_host": "127.0.0.1",
                "dicom_port": platform.dicom_port,
                "called_ae_title": platform.config.ae_title,
                "request_timeout": 2.0,
                "connect_timeout": 1.0,
                "acse_timeout": 2.0,
                "dimse_timeout": 2.0,
                "retry_base": 0.05,
                "retry_cap": 0.5,
                "breaker_open_seconds": 0.3,
            }
        },
    }
    path = tmp_path / "agent.toml"
    path.write_text(toml_out.dumps(config), encoding="utf-8")
    return path


def exam() -> dict[str, Any]:
    return {
        "examNo": "E20261123001",
        "accessionNo": ACCESSION,
        "patientInfo": {"sickId": PATIENT, "name": "张三", "sex": "男", "age": "46岁"},
        "examInfo": {
            "applyNo": "A0001",
            "examStatus": "70",
            "examTime": "2026-11-23 10:00:00",
            "examClass": "CT",
            "examItemList": [{"itemName": "胸部CT平扫"}],
            "examOrganList": [{"organName": "胸部"}],
        },
        "reportList": {
            "description": "右下肺见斑片状影。",
            "impression": "右下肺炎症。",
            "reporter": "赵医生",
            "reportTime": "2026-11-23 11:00:00",
        },
    }


async def until(platform: RemoteImagingSimulator, check: Any) -> None:
    async with asyncio.timeout(WAIT):
        await platform.wait_until(check)


async def test_study_and_report_reach_the_platform_through_a_sigkill_and_an_outage(tmp_path):
    storescu = dcmtk("storescu")
    files = make_study(
        tmp_path / "study", PATIENT, series=(("CT", 20), ("MR", 10)), accession=ACCESSION
    )
    ports = {"api": free_port(), "dicom": free_port()}
    async with city_platform() as platform:
        config = write_config(tmp_path, platform, ports)
        agent = WatchedAgent(config, tmp_path)
        await agent.start()
        try:
            await agent.wait_log(lambda line: line.get("event") == "dicom.scp_listening")
            target = ["-aet", "CT01", "-aec", "EDGE_AGENT", "127.0.0.1", str(ports["dicom"])]
            for options, group in by_storescu_options(files):
                sent = await asyncio.to_thread(
                    subprocess.run,
                    [storescu, *options, *target, *map(str, group)],
                    capture_output=True,
                    text=True,
                    timeout=WAIT,
                    env={"TCP_NODELAY": "1"},
                    check=False,
                )
                assert sent.returncode == 0, sent.stderr  # every instance acknowledged: journaled

            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{ports['api']}/api/v1/exams"
                async with http.post(url, json=exam(), headers=headers) as response:
                    assert response.status == 201, await response.text()

            # The platform holds a C-STORE early on; the agent dies with it in flight.
            await until(platform, lambda r: len(r.instances) >= 2)
            platform.faults.hold = True
            await until(platform, lambda r: r.held >= 1)
            assert len(platform.received.instances) < len(files)  # mid-forwarding, truly
            await agent.kill()
            await platform.go_down()
            platform.release_held()

            agent = WatchedAgent(config, tmp_path)
            await agent.start()  # the platform is away: it retries, and loses nothing
            await agent.wait_log(lambda line: line.get("event") == "uplink.unavailable")
            await platform.come_up()
            await until(platform, lambda r: len(r.instances) == len(files))
            assert await agent.stop() == 0
        finally:
            if agent.proc is not None and agent.proc.returncode is None:
                await agent.kill()

    received = platform.received
    assert received.dicom_refused == []  # never before its push, tags always equal
    study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    push = received.pushes[0]
    assert push["examNo"] == "E20261123001" and push["examInfo"]["patientID"] == PATIENT
    assert push["imageList"][0]["studyUID"] == study_uid
    assert push["imageList"][0]["accessionNo"] == ACCESSION
    for path in files:
        sop = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        assert received.instances[sop].data == dataset_bytes(path), path.name
