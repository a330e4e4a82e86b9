"""An integrator drives `edge-agent simulate` through its control API while a real agent sends."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.agent_process import AgentProcess
from tests.helpers import eventually
from tests.simulator_process import SimulatorProcess

COUNT = 2  # per producer; two producers, two order keys


@pytest.fixture
async def http_cloud(tmp_path: Path) -> AsyncIterator[SimulatorProcess]:
    """`edge-agent simulate http-cloud` with a client secret and a state folder."""
    simulator = SimulatorProcess(
        "http-cloud",
        "--client-id=agent",
        "--client-secret=s3cret-cloud-key",
        f"--state-dir={tmp_path / 'cloud-state'}",
    )
    try:
        await simulator.start()
        yield simulator
    finally:
        await simulator.kill()


def agent_config(tmp_path: Path, cloud: SimulatorProcess) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
[agent]
state_dir = "state"
shutdown_timeout = 1.0
[log]
format = "json"
[sources.sensor]
type = "synthetic"
rate = 0
count = {COUNT}
producers = 2
[uplinks.cloud]
type = "http"
url = "{cloud.printed["url"]}"
token_url = "{cloud.printed["token_url"]}"
client_id = "agent"
client_secret = "s3cret-cloud-key"
forward = ["synthetic.*"]
retry_base = 0.05
retry_cap = 0.2
breaker_open_seconds = 0.2
""",
        encoding="utf-8",
    )
    return path


def outbox(tmp_path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(tmp_path / "state" / "journal.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM outbox ORDER BY id")]


@pytest.mark.parametrize("mode", ["refuse", "unavailable"])
async def test_the_agent_retries_while_the_cloud_is_down_and_each_message_arrives_once(
    tmp_path, http_cloud, mode
):
    down = await http_cloud.call("POST", "/down", {"mode": mode})
    assert down["down"] == mode
    agent = AgentProcess(agent_config(tmp_path, http_cloud), tmp_path)
    await agent.start()

    async def retried() -> bool:
        rows = outbox(tmp_path)
        heads = [r for r in rows if r["attempts"]]  # the oldest of each order key
        return all(r["state"] == "pending" for r in rows) and any(
            r["attempts"] >= 2 and r["last_error"] for r in heads
        )

    await eventually(retried)
    refused = await http_cloud.call("GET", "/received")
    if mode == "refuse":  # nothing reached it: the connections were refused
        assert refused["received"] == []
    else:  # every attempt (the token request first) reached it and was answered 503
        assert refused["received"]
        assert {(a["verdict"], a["code"]) for a in refused["received"]} == {("failed", 503)}

    assert (await http_cloud.call("POST", "/up"))["down"] is None

    async def accepted() -> list[dict[str, Any]]:
        found = await http_cloud.call("GET", "/received?kind=ingest&verdict=accepted")
        arrivals: list[dict[str, Any]] = found["received"]
        return arrivals if len(arrivals) >= 2 * COUNT else []

    arrivals = await eventually(accepted)
    await eventually(lambda: _all_delivered(tmp_path))
    assert await agent.stop() == 0
    keys = Counter(a["key"] for a in arrivals)
    assert keys == Counter({r["dedupe_key"]: 1 for r in outbox(tmp_path)})
    assert all(a["at"].endswith("+00:00") or a["at"][-6] in "+-" for a in arrivals)


async def _all_delivered(tmp_path: Path) -> bool:
    rows = outbox(tmp_path)
    return len(rows) == 2 * COUNT and all(r["state"] == "delivered" for r in rows)


async def test_fault_switches_reach_a_running_agent_and_reset_restores_them(tmp_path, http_cloud):
    faults = await http_cloud.call("POST", "/faults", {"fail_next": 2, "fail_status": 429})
    assert (faults["fail_next"], faults["fail_status"]) == (2, 429)
    await http_cloud.call("POST", "/tokens/expire")
    agent = AgentProcess(agent_config(tmp_path, http_cloud), tmp_path)
    await agent.start()
    await eventually(lambda: _all_delivered(tmp_path))
    assert await agent.stop() == 0

    ingests = (await http_cloud.call("GET", "/received?kind=ingest"))["received"]
    assert [(a["verdict"], a["code"]) for a in ingests[:2]] == [("failed", 429)] * 2
    assert sum(a["verdict"] == "accepted" for a in ingests) == 2 * COUNT
    assert (await http_cloud.call("GET", "/faults"))["fail_next"] == 0
    later = await http_cloud.call("GET", f"/received?after={ingests[1]['seq']}&kind=ingest")
    assert [a["seq"] for a in later["received"]] == [a["seq"] for a in ingests[2:]]

    await http_cloud.call("POST", "/faults", {"fail_next": 7})
    status = await http_cloud.call("POST", "/reset")
    assert status["faults"]["fail_next"] == 0
    assert status["counts"]["received"] == 0
    assert (await http_cloud.call("GET", "/received"))["received"] == []


@pytest.mark.parametrize(
    ("platform", "url_of", "args"),
    [
        ("zhejiang-endoscope", "base_url", []),
        ("remote-imaging", "base_url", ["--dicom-port=0"]),
        ("http-cloud", "url", []),
        ("insurance-imaging", "deletion_url", []),
        ("idcas-archive", "auth_url", []),
        ("results-sharing", "base_url", []),
        ("provincial-imaging", "service_url", []),
    ],
)
async def test_every_simulate_command_goes_down_and_comes_up(tmp_path, platform, url_of, args):
    simulator = SimulatorProcess(platform, *args, f"--state-dir={tmp_path / 'state'}")
    try:
        await simulator.start()
        url = simulator.printed[url_of]
        assert await _answers(url)
        await simulator.call("POST", "/down")
        assert not await _answers(url)  # refused: the port is closed
        await simulator.call("POST", "/up")
        assert await _answers(url)
        status = await simulator.call("GET", "")
        assert status["down"] is None and status["counts"]["received"] == 2
        assert status["state_dir"] == str(tmp_path / "state")
    finally:
        await simulator.kill()
    assert simulator.proc is not None


async def _answers(url: str) -> bool:
    """Whether something answers HTTP at `url` (any status); False when the connection fails."""
    try:
        async with aiohttp.ClientSession() as session, session.post(url) as resp:
            return resp.status > 0
    except aiohttp.ClientConnectionError:
        return False
