"""Reads off the writer (issue 22 item 6): while the journal's writer is stuck in a commit, the
dashboard, /metrics, /healthz and the API's reads still answer, and /healthz says it is stuck."""

from __future__ import annotations

import asyncio
import threading

import aiohttp

from agent import runtime
from agent.config import load_config
from agent.plugins import PLUGIN_KINDS
from agent.runtime import Agent
from tests.integration.test_runtime import ReadyNotifier
from tests.mosquitto import free_port

TOKEN = "reads-token-0123456789"


async def test_a_blocked_writer_does_not_block_pages_probes_or_reads(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "PROBE_TIMEOUT", 0.5)
    port = free_port()
    path = tmp_path / "agent.toml"
    path.write_text(
        '[agent]\nstate_dir = "state"\nshutdown_timeout = 1.0\n'
        f'[api]\nenabled = true\nport = {port}\ntoken = "{TOKEN}"\n'
        "dashboard_read_only_open = true\nhealth_without_token = true\n",
        encoding="utf-8",
    )
    notifier = ReadyNotifier()
    agent = Agent(load_config(path, PLUGIN_KINDS), notifier)
    running = asyncio.create_task(agent.run())
    gate = threading.Event()
    base = f"http://127.0.0.1:{port}"
    try:
        async with asyncio.timeout(10):
            await notifier.ready.wait()
        assert agent.journal is not None
        stuck = asyncio.create_task(agent.journal.run(lambda conn: gate.wait(30)))
        while agent.journal.busy_for() == 0:  # the writer is inside the stuck commit
            await asyncio.sleep(0.01)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with asyncio.timeout(10), aiohttp.ClientSession() as http:
            for route, headers in (
                ("/metrics", {}),
                ("/api/v1/alerts", auth),
                ("/api/v1/scopes", auth),
                ("/", {}),
                ("/uplinks", {}),
                ("/alerts", {}),
            ):
                async with http.get(base + route, headers=headers) as response:
                    assert response.status == 200, route
            while True:  # answered all along; unhealthy once the commit has run too long
                async with http.get(base + "/healthz") as response:
                    body = await response.json()
                    if response.status == 503:
                        break
                    assert response.status == 200
                await asyncio.sleep(0.1)
        assert "JournalStalled" in str(body)
        assert not stuck.done()
        gate.set()
        await stuck
    finally:
        gate.set()
        agent.request_stop()
        await running
