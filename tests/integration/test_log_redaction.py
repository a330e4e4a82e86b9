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
