"""Scenario: a platform rejects records and echoes them back; no identifier reaches the log."""

from __future__ import annotations

import asyncio
import json
import sqlite3

from agent.simulators.http_cloud import HttpCloud
from tests.agent_process import AgentProcess

CLOUD_SECRET = "s3cret-cloud-key"
IDENTIFIERS = (
    "张三丰",
    "\\u5f20\\u4e09\\u4e30",  # the name as a JSON-escaped platform answer quotes it
    "33010219900",  # even a truncated ID-card number gives the birth date away
    "13812345678",
    "0571-87654321",
    CLOUD_SECRET,
)


async def test_no_secret_or_patient_identifier_in_any_log_line(tmp_path, cloud: HttpCloud):
    cloud.faults.reject_containing = "330102"  # the platform answers 422 quoting the record
    config = tmp_path / "agent.toml"
    config.write_text(
        f"""
[agent]
state_dir = "state"
[log]
level = "debug"
format = "json"
[sources.ward]
type = "synthetic"
kind = "exam.order"
rate = 0
count = 3
[sources.ward.payload]
patient_name = "张三丰"
id_card = "330102199001011234"
phone = "13812345678"
ward_phone = "0571-87654321"
[uplinks.cloud]
type = "http"
url = "{cloud.url}/ingest"
token_url = "{cloud.url}/token"
client_id = "agent"
client_secret = "env:CLOUD_SECRET"
forward = ["exam.*"]
[uplinks.misconfigured]
type = "http"
url = "{cloud.url}/ingest"
token_url = "{cloud.url}/token"
client_id = "agent"
client_secret = "wrong-{CLOUD_SECRET}"
forward = ["exam.*"]
retry_base = 0.05
breaker_threshold = 2
""",
        encoding="utf-8",
    )
    agent = AgentProcess(config, tmp_path, env={"CLOUD_SECRET": CLOUD_SECRET})
    await agent.start()
    db = tmp_path / "state" / "journal.db"

    def dead_letters() -> int:
        with sqlite3.connect(db) as conn:
            return int(
                conn.execute(
                    "SELECT COUNT(*) FROM outbox WHERE uplink = 'cloud' AND state = 'dead'"
                ).fetchone()[0]
            )

    def misconfigured_failures() -> int:
        with sqlite3.connect(db) as conn:
            row = conn.execute(
                "SELECT breaker FROM uplink_state WHERE uplink = 'misconfigured'"
            ).fetchone()
        return 1 if row and row[0] == "open" else 0

    async with asyncio.timeout(30):
        while dead_letters() < 3 or not misconfigured_failures():
            await asyncio.sleep(0.05)
    assert await agent.stop() == 0
    output = await agent.output()
    lines = [json.loads(line) for line in output.splitlines()]

    # The scenario really exercised the dangerous paths ...
    dead = [line for line in lines if line["event"] == "outbox.dead_letter"]
    assert len(dead) == 3 and all("***" in line["reason"] for line in dead)
    assert any(line["event"] == "uplink.unavailable" for line in lines)
    # ... and nothing identifying made it out.
    for identifier in IDENTIFIERS:
        assert identifier not in output, f"{identifier!r} leaked into the log"


async def test_idcas_traffic_logs_no_key_token_sev_password_or_patient_identifier(tmp_path):
    """Issue 18: links for every page, WebApis, a refusal, an outage and the outbox, at debug."""
    import aiohttp

    from agent.simulators.idcas_archive import IdcasArchiveSimulator, IdcasArchiveSimulatorConfig
    from tests.integration.test_idcas_e2e import AUTH, ID_CARD, PAGES, PATIENT_NAME, write_config
    from tests.mosquitto import free_port
    from tests.watched_agent import WatchedAgent

    sim = IdcasArchiveSimulator("idcas", IdcasArchiveSimulatorConfig(type="idcas_archive", port=0))
    await sim.start()
    ports = {name: free_port() for name in ("api", "his")}
    config = write_config(tmp_path, sim, ports)
    config.write_text(config.read_text().replace('level = "info"', 'level = "debug"'))
    agent = WatchedAgent(config, tmp_path)
    urls: list[str] = []
    issued: list[str] = []
    try:
        await agent.start()
        base = f"http://127.0.0.1:{ports['api']}/api/v1/idcas"
        async with aiohttp.ClientSession(headers=AUTH) as http:
            for page, values in PAGES.items():
                async with http.post(f"{base}/links/{page}", json=values) as answer:
                    urls.append((await answer.json())["url"])
            bad = {"work_no": ID_CARD, "org_code": PATIENT_NAME, "colour": ID_CARD}
            async with http.post(f"{base}/links/clinic-view", json=bad) as answer:
                assert answer.status == 422
            async with http.post(f"{base}/webapi/all-exams", json={"id_card_no": ID_CARD}) as a:
                assert a.status == 200
            async with http.get(f"{base}/webapi/exam-detail?id=999") as answer:
                assert answer.status == 502
            issued = list(sim._tokens)  # the client and user tokens, before they all expire
            sim.expire_tokens()
            await sim.go_down("unavailable")
            async with http.post(f"{base}/webapi/all-exams", json={"id_card_no": ID_CARD}) as a:
                assert a.status == 503
            flag = {"id_card_no": ID_CARD, "accession_number": "CT-1", "client_host": "10.0.0.9",
                    "print_time": "2026-12-07 10:00:00", "client_name": PATIENT_NAME}  # fmt: skip
            async with http.post(f"{base}/print-flag", json=flag) as answer:
                assert answer.status == 202
            await agent.wait_log(lambda line: line.get("event") == "uplink.unavailable", 30)
            await sim.come_up()
            async with asyncio.timeout(30):
                await sim.wait_until(lambda r: bool(r.print_flags))
        assert await agent.stop() == 0
    finally:
        if agent.proc is not None and agent.proc.returncode is None:
            await agent.kill()
        await sim.stop()
    logged = await agent.output()
    assert "idcas.link_built" in logged  # it did log, at debug level
    cfg = sim.config
    secrets = [sim.sev, cfg.des_key, cfg.md5_key, cfg.password, cfg.client_secret, ID_CARD]
    secrets += [PATIENT_NAME, json.dumps(PATIENT_NAME)[1:-1], *issued, *sim._tokens]
    secrets += [
        value for url in urls for value in url.split("?", 1)[-1].split("&") if len(value) > 12
    ]
    leaked = [s for s in secrets if s and s in logged]
    assert not leaked, leaked
