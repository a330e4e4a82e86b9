"""/metrics parses as Prometheus text and counts what happened; /healthz turns 503 and back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from agent.simulators.http_cloud import HttpCloud
from tests.agent_process import AgentProcess
from tests.integration.test_runtime import write_config
from tests.mosquitto import free_port

TOKEN = "observability-token-0123456789"
DELIVERED = ("edge_agent_outbox_messages", (("state", "delivered"), ("uplink", "cloud")))
DELIVERED = ("edge_agent_outbox_messages", (("state", "delivered"), ("uplink", "cloud")))


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def started(tmp_path: Path, cloud: HttpCloud, extra: str = "") -> tuple[AgentProcess, str]:
    port = free_port()
    api = f'[api]\nenabled = true\nport = {port}\ntoken = "{TOKEN}"\n'
    config = write_config(tmp_path, cloud, "breaker_threshold = 2\nretry_base = 0.05\n" + extra)
    config.write_text(config.read_text(encoding="utf-8") + api, encoding="utf-8")
    agent = AgentProcess(config, tmp_path)
    await agent.start()
    return agent, f"http://127.0.0.1:{port}"


async def get(url: str, **kwargs: Any) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url, **kwargs) as response:
        return response.status, await response.text()


async def until_status(url: str, status: int) -> dict[str, Any]:
    async with asyncio.timeout(20), aiohttp.ClientSession() as http:
        while True:
            async with http.get(url) as response:
                if response.status == status:
                    body: dict[str, Any] = await response.json()
                    return body
            await asyncio.sleep(0.05)


async def test_metrics_count_deliveries_and_parse_as_prometheus_text(tmp_path, cloud):
    agent, base = await started(tmp_path, cloud)
    try:
        async with asyncio.timeout(20):
            await cloud.wait_until(lambda r: len(r.deliveries) >= 10)  # 2 producers x 5 events
            while True:  # the dispatcher settles a delivery just after the cloud has it
                status, text = await get(f"{base}/metrics")
                found = samples(text)
                if found[DELIVERED] == 10:
                    break
                await asyncio.sleep(0.02)
        assert status == 200
        assert found[("edge_agent_database_up", ())] == 1
        outcome = ("edge_agent_deliveries_total", (("outcome", "delivered"), ("uplink", "cloud")))
        assert found[outcome] == 10
        closed = ("edge_agent_uplink_breaker_state", (("state", "closed"), ("uplink", "cloud")))
        assert found[closed] == 1
        sensor = ("edge_agent_source_up", (("source", "sensor"), ("type", "synthetic")))
        assert found[sensor] == 0  # it has emitted its `count` events and finished
        assert found[("edge_agent_alerts_open", (("severity", "critical"),))] == 0
        assert found[("edge_agent_journal_commits_total", ())] > 0
        # The rest of the API still wants its token.
        assert (await get(f"{base}/api/v1/alerts"))[0] == 401
    finally:
        await agent.stop()


async def test_healthz_turns_503_while_a_breaker_is_open_and_back(tmp_path, cloud):
    cloud.faults.fail_next = 1_000_000  # the cloud answers 503 until the test says otherwise
    agent, base = await started(tmp_path, cloud, "breaker_open_seconds = 0.2\n")
    try:
        body = await until_status(f"{base}/healthz", 503)
        assert body["problems"] == ["uplink:cloud"]
        assert body["uplinks"]["cloud"]["breaker"] == "open"
        cloud.faults.fail_next = 0
        body = await until_status(f"{base}/healthz", 200)
        assert body["status"] == "ok" and body["database"]["ok"]
    finally:
        await agent.stop()
