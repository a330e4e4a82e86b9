"""Seed 003 §3.4 (scenario 3) end to end: a real agent against the provincial platform's
simulator. HIS posts orders to the local API; the agent journals them and calls SynApplyInfo
(SOAP) through the outbox; the platform calls SynStatusInfo on the agent's listener, and the
order's state on the local API shows the exam status. Answer codes: 0 delivered, -88 a dead
letter naming the code, -99 on a DELETE delivered (already gone). Nothing patient-identifying
nor the License is logged."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent import toml_out
from agent.simulators.provincial_imaging import (
    ProvincialImagingSimulator,
    ProvincialImagingSimulatorConfig,
)
from agent.uplinks.provincial_imaging import soap
from tests.mosquitto import free_port
from tests.unit.test_provincial_elements import seed_order
from tests.watched_agent import WatchedAgent

TOKEN = "provincial-e2e-api-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT = 60.0
LICENSE = "F9BDEFC9EDD6426E57E9DFEFE3A74FA2"


def write_config(tmp_path: Path, sim: ProvincialImagingSimulator, ports: dict[str, int]) -> Path:
    config = {
        "agent": {"state_dir": "state", "shutdown_timeout": 1.0, "stats_interval": 0},
        "log": {"format": "json", "level": "info"},
        "api": {"enabled": True, "port": ports["api"], "token": TOKEN},
        "uplinks": {
            "province": {
                "type": "provincial_imaging",
                "service_url": sim.service_url,
                "license": LICENSE,
                "hospital_id": "7173",
                "request_timeout": 5.0,
                "retry_base": 0.05,
                "retry_cap": 0.5,
                "listener": {"enabled": True, "port": ports["platform"], "allow": ["127.0.0.1/32"]},
            }
        },
    }
    path = tmp_path / "agent.toml"
    path.write_text(toml_out.dumps(config), encoding="utf-8")
    return path


@pytest.fixture
async def platform():
    status_port = free_port()
    config = ProvincialImagingSimulatorConfig(
        type="provincial_imaging",
        port=0,
        status_url=f"http://127.0.0.1:{status_port}/services/SynStatusInfo",
    )
    sim = ProvincialImagingSimulator("province", config)
    await sim.start()
    sim.status_port = status_port  # type: ignore[attr-defined]
    yield sim
    await sim.stop()


async def api(http: aiohttp.ClientSession, port: int, method: str, path: str, body: Any = None):
    url = f"http://127.0.0.1:{port}{path}"
    async with http.request(method, url, json=body, headers=AUTH) as answer:
        return answer.status, await answer.json()


async def order_state(http, port: int, apply_no: str, check) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        while True:
            status, body = await api(http, port, "GET", f"/api/v1/his-orders/{apply_no}")
            if status == 200 and check(body):
                found: dict[str, Any] = body
                return found
            await asyncio.sleep(0.05)


async def test_orders_reach_the_platform_and_its_statuses_come_back_into_the_orders_state(
    tmp_path, platform
):
    ports = {"api": free_port(), "platform": platform.status_port}
    agent = WatchedAgent(write_config(tmp_path, platform, ports), tmp_path)
    await agent.start()
    try:
        async with aiohttp.ClientSession() as http:
            status, body = await api(http, ports["api"], "POST", "/api/v1/his-orders", seed_order())
            assert (status, body["apply_no"], body["action"]) == (202, "7173_00000001", "INSERT")
            delivered = await order_state(
                http, ports["api"], "00000001", lambda o: o["delivery"]["state"] == "delivered"
            )
            assert delivered["action"] == "INSERT" and delivered["exam_status"] is None
            (call,) = platform.received.calls
            assert (call["action"], call["apply_no"], call["code"]) == (
                "INSERT", "7173_00000001", "0"
            )  # fmt: skip
            assert call["order"]["Patient"]["PatientName"] == "肖萍"
            assert platform.received.refused == []

            # the platform confirms the exam (20) and, later, the report (70) with a viewer URL
            assert await platform.send_status("7173_00000001", "20") == ("0", "成功")
            confirmed = await order_state(
                http, ports["api"], "7173_00000001", lambda o: o["exam_status"] == "20"
            )
            assert confirmed["exam_status_name"] == "检查确认"
            url = "http://10.120.6.28:5063/viewer?exam=E1"
            assert await platform.send_status("7173_00000001", "70", image_url=url) == ("0", "成功")
            reported = await order_state(
                http, ports["api"], "00000001", lambda o: o["exam_status"] == "70"
            )
            assert (reported["image_url"], reported["operated_at"]) == (url, "2026-12-08 10:00:00")

            # an UPDATE after registration: -88, a dead letter with the platform's code
            changed = seed_order(Exam__ClinDiag="复查")
            changed["Action"] = "UPDATE"
            status, body = await api(http, ports["api"], "POST", "/api/v1/his-orders", changed)
            assert status == 202
            refused = await order_state(
                http, ports["api"], "00000001", lambda o: o["delivery"]["state"] == "dead"
            )
            assert "code -88" in refused["delivery"]["last_error"]
            assert refused["exam_status"] == "70"  # the platform's word is kept

            # a DELETE of an order the platform does not have: -99, its goal holds: delivered
            cancel = {"Action": "DELETE", "Patient": {"SickNo": "C9"}, "Exam": {"ApplyNo": "X9"}}
            assert (await api(http, ports["api"], "POST", "/api/v1/his-orders", cancel))[0] == 202
            gone = await order_state(
                http, ports["api"], "X9", lambda o: o["delivery"]["state"] == "delivered"
            )
            assert gone["action"] == "DELETE"
            assert platform.received.calls[-1]["code"] == "-99"

            # HIS's mistakes are named at once, nothing queued
            bad = seed_order(Patient__PatientName=None)
            status, body = await api(http, ports["api"], "POST", "/api/v1/his-orders", bad)
            assert (status, body["problems"]) == (
                422, ["Patient.PatientName: required field is missing"]
            )  # fmt: skip
            status, listed = await api(http, ports["api"], "GET", "/api/v1/his-orders?limit=10")
            assert {o["apply_no"] for o in listed["orders"]} == {"7173_00000001", "7173_X9"}

            # a status the agent cannot read is answered -3, not journaled
            garbled = "<XmlDocument><Exam><ExamStatus code='99'/></Exam></XmlDocument>"
            assert (await _status_call(http, platform, garbled))[0] == "-3"
            async with http.get(f"{platform.config.status_url}?wsdl") as wsdl:
                assert wsdl.status == 200 and "SynStatusInfo" in await wsdl.text()
        assert await agent.stop() == 0
    finally:
        if agent.proc is not None and agent.proc.returncode is None:
            await agent.kill()
    logged = await agent.output()
    for secret in (LICENSE, "肖萍", "440786198001012839", "7173_C0001"):
        assert secret not in logged


async def _status_call(
    http: aiohttp.ClientSession, platform: ProvincialImagingSimulator, document: str
) -> tuple[str, str]:
    target = str(platform.config.status_url)
    client = soap.SoapClient("SynStatusInfo", soap.wsdl(*soap.STATUS, "urn:x", target), None)
    body, headers = client.request(document)
    async with http.post(target, data=body, headers=headers) as answer:
        content = await answer.read()
    return soap.read_result(client.answer(answer.status, content, "text/xml"))
