"""Issue 18 acceptance: a real agent against the IDCAS simulator.

Links for every page open 200 at the simulated portal, by the local API and by the stable
/idcas/open link on the HIS-facing listener; a changed parameter, an old timestamp or a wrong key
get 403 there. The WebApis answer, survive the platform expiring every token, and answer 503 while
it is down; the print flag and the day's statistics queued meanwhile arrive once each after a
SIGKILL and the platform's return. Nothing secret, nor the patient's identifiers, is logged.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from agent import toml_out
from agent.crypto import des3
from agent.simulators.idcas_archive import IdcasArchiveSimulator, IdcasArchiveSimulatorConfig
from agent.uplinks.idcas_archive import links
from agent.uplinks.idcas_archive.links import LinkKeys
from tests.mosquitto import free_port
from tests.watched_agent import WatchedAgent

TOKEN = "idcas-e2e-api-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT = 60.0
ZONE = ZoneInfo("Asia/Shanghai")
ID_CARD = "330922196309015018"
PATIENT_NAME = "王五"
PAGES: dict[str, dict[str, Any]] = {
    "clinic-view": {"work_no": "001", "org_code": "2470", "id_card_no": ID_CARD,
                    "start_time": "2026-01-01", "end_time": "2026-12-07"},
    "health-record": {"work_no": "001", "org_code": "2470", "perform_org_code": "2470",
                      "accession_number": "CT-1", "exam_type": "CT"},
    "repeat-reminder": {"clinic_type": "0", "user_org_code": "2470", "user_org_name": "示例医院",
                        "user_id": "001", "user_name": "张医生", "patient_name": PATIENT_NAME,
                        "id_card_no": ID_CARD, "exam_body_part": "头部"},
    "recognition": {"visit_id": "V1", "org_code": "2470", "depart_code": "D1",
                    "depart_name": "内科", "doctor_no": "001", "doctor_name": "张医生",
                    "doctor_id_card": "330100198001010011",
                    "card_type": 3, "card_no": "C1", "id_card_no": ID_CARD,
                    "patient_name": PATIENT_NAME, "patient_sex": 1, "patient_age": 63,
                    "age_unit": "岁", "ip_address": "10.0.0.8", "ip_mac": "00-11-22-33-44-55",
                    "req_type": 3103, "observation_item": "CT001"},
    "h5-report-list": {"identity_type": "1", "identity_no": ID_CARD, "perform_org_code": "2470",
                       "perform_time_start": "2026-01-01", "perform_time_end": "2026-12-07"},
    "h5-exam-detail": {"perform_org_code": "2470", "accession_number": "CT-1",
                       "patient_id": "P1", "exam_type": "CT"},
    "h5-lab-detail": {"perform_org_code": "2470", "accession_number": "L-1",
                      "patient_id": "P1", "exam_type": "血常规"},
    "h5-health-record": {"perform_org_code": "2470", "accession_number": "CT-1", "exam_type": "CT"},
    "quality-report": {},
}  # fmt: skip
WEBAPIS: dict[str, dict[str, Any]] = {
    "qrcode": {"tenancy_id": "T1", "exam_type": "CT", "accession_number": "CT-1"},
    "image-viewer": {"org_code": "2470", "accession_number": "CT-1", "patient_id": "P1",
                     "modality": "CT"},
    "recognition": PAGES["recognition"],
    "exams": {"time_type": 0, "start_time": "2026-12-01", "end_time": "2026-12-07",
              "page_index": 1, "page_size": 20},
    "province-exams": {"identity_type": 1, "identity_no": ID_CARD},
    "all-exams": {"id_card_no": ID_CARD},
    "exam-detail": {"id": 10001, "client_kind": 1},
    "report-view-url": {"business_id": 10001, "need_token": True},
    "image-view-url": {"business_id": 10001, "need_token": True},
    "print-exams": {"exam_type": "CT", "org_code": "2470", "id_card_no": ID_CARD,
                    "reg_time_begin": "2026-12-01 00:00:00", "reg_time_end": "2026-12-07 23:59:59"},
    "print-files": {"business_id": 10001, "file_type": "Result", "file_format": "Pdf"},
}  # fmt: skip


def write_config(tmp_path: Path, sim: IdcasArchiveSimulator, ports: dict[str, int]) -> Path:
    cfg = sim.config
    (tmp_path / "des.key").write_text(cfg.des_key + "\n", encoding="utf-8")
    config = {
        "agent": {"state_dir": "state", "shutdown_timeout": 1.0, "stats_interval": 0},
        "log": {"format": "json", "level": "info"},
        "api": {"enabled": True, "port": ports["api"], "token": TOKEN},
        "uplinks": {
            "idcas": {
                "type": "idcas_archive",
                "auth_url": f"{sim.url}/auth",
                "gateway_url": f"{sim.url}/api",
                "doc_gateway_url": f"{sim.url}/doc",
                "portal_url": sim.url,
                "org_code": "2470",
                "client_id": cfg.client_id,
                "client_secret": cfg.client_secret,
                "username": cfg.username,
                "password": cfg.password,
                "des_key": "file:des.key",
                "md5_key": cfg.md5_key,
                "sev": sim.sev,
                "request_timeout": 2.0,
                "webapi_timeout": 3.0,
                "retry_base": 0.05,
                "retry_cap": 0.5,
                "breaker_open_seconds": 0.3,
                "listener": {"enabled": True, "port": ports["his"], "allow": ["127.0.0.1/32"]},
                "statistics": {"enabled": True, "at": "00:00", "catch_up_days": 1},
            }
        },
    }
    path = tmp_path / "agent.toml"
    path.write_text(toml_out.dumps(config), encoding="utf-8")
    return path


async def api(http: aiohttp.ClientSession, port: int, method: str, path: str, body: Any = None):
    url = f"http://127.0.0.1:{port}{path}"
    async with http.request(method, url, json=body, headers=AUTH) as answer:
        return answer.status, await answer.json()


async def opens(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url, allow_redirects=False) as answer:
        return answer.status, await answer.text()


def tampered(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = [(k, value if k == name else v) for k, v in parse_qsl(parts.query, True)]
    return parts._replace(query=urlencode(query, quote_via=quote)).geturl()


@pytest.fixture
async def simulator():
    sim = IdcasArchiveSimulator("idcas", IdcasArchiveSimulatorConfig(type="idcas_archive", port=0))
    await sim.start()
    yield sim
    await sim.stop()


async def test_every_page_opens_and_a_tampered_old_or_wrong_key_link_is_refused(
    tmp_path, simulator
):
    ports = {name: free_port() for name in ("api", "his")}
    agent = WatchedAgent(write_config(tmp_path, simulator, ports), tmp_path)
    await agent.start()
    try:
        async with aiohttp.ClientSession() as http:
            urls = {}
            for page, values in PAGES.items():
                status, body = await api(
                    http, ports["api"], "POST", f"/api/v1/idcas/links/{page}", values
                )
                assert status == 200, (page, body)
                urls[page] = body["url"]
                assert (await opens(http, body["url"]))[0] == 200, page
                # the stable link HIS embeds: on the HIS-facing listener, no token, a fresh 302
                query = urlencode({k: str(v) for k, v in values.items()})
                stable = f"http://127.0.0.1:{ports['his']}/idcas/open/{page}?{query}"
                async with http.get(stable, allow_redirects=False) as answer:
                    assert answer.status == 302, (page, await answer.text())
                    assert answer.headers["Cache-Control"] == "no-store"
                    assert (await opens(http, answer.headers["Location"]))[0] == 200, page
            assert {p["page"] for p in simulator.received.pages if p["status"] == 200} == set(PAGES)

            # a changed parameter: the token, a per-value H5 ciphertext, the sev's account
            other = des3.encrypt_text(
                '{"work_no":"002","org_code":"2470"}', simulator.config.des_key
            )
            status, text = await opens(http, tampered(urls["clinic-view"], "token", other))
            assert (status, "sign" in text) == (403, True)
            h5 = tampered(urls["h5-exam-detail"], "accession_number", "garbage==")
            assert (await opens(http, h5))[0] == 403
            # an old timestamp, and the wrong MD5 or 3DES key, signed by the pure builder
            keys = LinkKeys(des_key=simulator.config.des_key, md5_key=simulator.config.md5_key,
                            sev=simulator.sev)  # fmt: skip
            now = datetime.now(ZONE)
            values = PAGES["clinic-view"]
            old = links.build(
                "clinic-view", values, keys, portal=simulator.url, now=now - timedelta(hours=1)
            )
            assert await opens(http, old) == (403, "403 timestamp: outside the accepted window")
            wrong_md5 = LinkKeys(des_key=keys.des_key, md5_key="another-key", sev=keys.sev)
            url = links.build("clinic-view", values, wrong_md5, portal=simulator.url, now=now)
            assert (await opens(http, url))[0] == 403
            wrong_des = LinkKeys(des_key="another-3des-key", md5_key=keys.md5_key, sev=keys.sev)
            url = links.build("clinic-view", values, wrong_des, portal=simulator.url, now=now)
            assert await opens(http, url) == (
                403,
                "403 token: does not decrypt to JSON with the 3DES key",
            )
            # bad input at the agent: named parameter, unknown page
            status, body = await api(
                http, ports["api"], "POST", "/api/v1/idcas/links/clinic-view", {"work_no": "1"}
            )
            assert status == 422 and "org_code: required" in body["problems"]
            status, body = await api(http, ports["api"], "POST", "/api/v1/idcas/links/nope", {})
            assert status == 404
            async with http.get(
                f"http://127.0.0.1:{ports['api']}/idcas/open/clinic-view"
            ) as answer:
                assert answer.status == 401  # on the local API, the open link needs its token
        assert await agent.stop() == 0
    finally:
        if agent.proc is not None and agent.proc.returncode is None:
            await agent.kill()
    logged = await agent.output()
    cfg = simulator.config
    secrets = (simulator.sev, cfg.des_key, cfg.md5_key, cfg.password, cfg.client_secret)
    for secret in (*secrets, ID_CARD, PATIENT_NAME):
        assert secret not in logged


async def test_webapis_reauthenticate_and_report_an_outage_while_the_outbox_delivers_once(
    tmp_path, simulator
):
    ports = {name: free_port() for name in ("api", "his")}
    config = write_config(tmp_path, simulator, ports)
    agent = WatchedAgent(config, tmp_path)
    await agent.start()
    yesterday = (datetime.now(ZONE) - timedelta(days=1)).date().isoformat()
    try:
        async with aiohttp.ClientSession() as http:
            for name, values in WEBAPIS.items():
                status, body = await api(
                    http, ports["api"], "POST", f"/api/v1/idcas/webapi/{name}", values
                )
                assert (status, body["code"]) == (200, 0), (name, body)
                assert body["data"], name
            assert simulator.received.calls == list(WEBAPIS)
            status, body = await api(
                http, ports["api"], "GET", "/api/v1/idcas/webapi/exam-detail?id=10001"
            )
            assert body["data"]["accession_number"] == "CT-1"
            assert simulator.received.user_tokens_issued == 1
            simulator.expire_tokens()  # every token dies: the next call re-authenticates once
            status, body = await api(
                http, ports["api"], "GET", "/api/v1/idcas/webapi/all-exams?id_card_no=1"
            )
            assert status == 200 and simulator.received.user_tokens_issued == 2
            status, body = await api(http, ports["api"], "POST", "/api/v1/idcas/webapi/exams", {})
            assert status == 422 and "time_type: required" in body["problems"]

            await simulator.go_down("refuse")
            status, body = await api(
                http, ports["api"], "POST", "/api/v1/idcas/webapi/all-exams", {"id_card_no": "1"}
            )
            assert status == 503 and "unavailable" in body["error"]
            flag = {"accession_number": "CT-1", "print_time": "2026-12-07 10:00:00",
                    "client_host": "10.0.0.9", "client_name": "PACS-WS1",
                    "cancel_flag": False}  # fmt: skip
            status, body = await api(http, ports["api"], "POST", "/api/v1/idcas/print-flag", flag)
            assert status == 202, body
            counts = {"day": yesterday, "patients_cnt": 1234, "work_stations": 56}
            status, body = await api(http, ports["api"], "POST", "/api/v1/idcas/statistics", counts)
            assert status == 202, body
        await agent.wait_log(lambda line: line.get("event") == "uplink.unavailable", WAIT)
        await agent.kill()
        agent = WatchedAgent(config, tmp_path)
        await agent.start()
        await simulator.come_up()
        async with asyncio.timeout(WAIT):
            await simulator.wait_until(lambda r: r.print_flags and r.statistics)
        assert await agent.stop() == 0
        agent = WatchedAgent(config, tmp_path)  # a third start: nothing is sent again
        await agent.start()
        await agent.wait_log(lambda line: line.get("event") == "agent.started")
        assert await agent.stop() == 0
    finally:
        if agent.proc is not None and agent.proc.returncode is None:
            await agent.kill()
    (stats,) = simulator.received.statistics
    assert (stats["org_code"], stats["patients_cnt"], stats["work_stations"]) == ("2470", 1234, 56)
    (printed,) = simulator.received.print_flags
    assert printed["accession_number"] == "CT-1" and printed["print_type"] == "Result"
    assert printed["cancel_flag"] == "false" and printed["org_code"] == "2470"
