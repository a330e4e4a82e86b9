"""A whole agent: the local API stays on loopback while a plugin's listener is bound elsewhere,
and neither serves the other's routes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from agent.config import load_config
from agent.errors import ConfigError
from agent.plugins import DOMAINS, PLUGIN_KINDS
from agent.runtime import Agent
from tests.integration.test_runtime import ReadyNotifier
from tests.platform_routes import NOTICES_PLUGIN, free_port, notices_journaled

API_TOKEN = "local-api-token-0123456789"
PLATFORM_TOKEN = "platform-token-0123456789"
PLATFORM_HOST = "127.0.0.2"  # Linux routes all of 127/8 to lo: another address on this machine


def write_config(tmp_path: Path, api_port: int, listener: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
[agent]
state_dir = "state"
shutdown_timeout = 1.0
[api]
enabled = true
port = {api_port}
token = "{API_TOKEN}"
dashboard = false
[domains.notices]
type = "platform_notices"
[domains.notices.listener]
{listener}
""",
        encoding="utf-8",
    )
    return path


async def status(client: aiohttp.ClientSession, url: str, token: str) -> int | str:
    """The status a GET or POST answers, or "refused" if nothing listens there."""
    headers = {"Authorization": f"Bearer {token}"}
    method = client.post if url.endswith("/notices") else client.get
    try:
        async with method(url, json={"exam": "E1"}, headers=headers) as answer:
            return answer.status
    except aiohttp.ClientConnectorError:
        return "refused"


async def test_local_api_on_loopback_and_platform_listener_elsewhere_serve_apart(
    tmp_path, monkeypatch
):
    monkeypatch.setitem(DOMAINS, "platform_notices", NOTICES_PLUGIN)
    api_port, platform_port = free_port(), free_port(PLATFORM_HOST)
    path = write_config(
        tmp_path,
        api_port,
        f'enabled = true\nhost = "{PLATFORM_HOST}"\nport = {platform_port}\n'
        f'allow = ["127.0.0.0/8"]\ntoken = "{PLATFORM_TOKEN}"',
    )
    notifier = ReadyNotifier()
    agent = Agent(load_config(path, PLUGIN_KINDS), notifier)
    running = asyncio.create_task(agent.run())
    api, platform = f"http://127.0.0.1:{api_port}", f"http://{PLATFORM_HOST}:{platform_port}"
    try:
        async with asyncio.timeout(10):
            await notifier.ready.wait()
        async with aiohttp.ClientSession() as client:
            seen = {
                "api on loopback": await status(client, f"{api}/api/v1/alerts", API_TOKEN),
                "api not on the platform's address": await status(
                    client, f"http://{PLATFORM_HOST}:{api_port}/api/v1/alerts", API_TOKEN
                ),
                "platform route on its listener": await status(
                    client, f"{platform}/notices", PLATFORM_TOKEN
                ),
                "listener not on loopback's 127.0.0.1": await status(
                    client, f"http://127.0.0.1:{platform_port}/notices", PLATFORM_TOKEN
                ),
                "api routes not on the listener": await status(
                    client, f"{platform}/api/v1/alerts", PLATFORM_TOKEN
                ),
                "metrics not on the listener": await status(
                    client, f"{platform}/metrics", PLATFORM_TOKEN
                ),
                "platform routes not on the api": await status(client, f"{api}/notices", API_TOKEN),
                "api token not taken by the listener": await status(
                    client, f"{platform}/notices", API_TOKEN
                ),
            }
        assert seen == {
            "api on loopback": 200,
            "api not on the platform's address": "refused",
            "platform route on its listener": 201,
            "listener not on loopback's 127.0.0.1": "refused",
            "api routes not on the listener": 404,
            "metrics not on the listener": 404,
            "platform routes not on the api": 404,
            "api token not taken by the listener": 401,
        }
        assert await agent.query(notices_journaled) == 1
        async with aiohttp.ClientSession() as client, client.get(f"{api}/metrics") as answer:
            metrics = await answer.text()
        assert 'edge_agent_listener_requests_total{listener="notices"} 4.0' in metrics
        assert 'edge_agent_listener_refused_total{listener="notices",reason="token"} 1.0' in metrics
    finally:
        agent.request_stop()
        await running


def test_an_enabled_listener_without_an_allow_list_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(DOMAINS, "platform_notices", NOTICES_PLUGIN)
    path = write_config(tmp_path, free_port(), "enabled = true\nport = 9443")
    with pytest.raises(ConfigError) as raised:
        load_config(path, PLUGIN_KINDS)
    assert raised.value.problems == [
        f"{path}: domains.notices.listener: allow is required when the listener is enabled:"
        ' the client address ranges (CIDR) that may connect, e.g. ["10.1.2.0/24"]'
    ]
