"""Shared fixtures: a journal in a temp dir, the HTTP cloud simulator, lingering-task guard."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from pydantic import SecretStr

from agent.journal.transaction import Handler
from agent.journal.writer import Journal
from agent.simulators.http_cloud import HttpCloud, HttpCloudConfig
from agent.simulators.zhejiang_endoscope import (
    ZhejiangEndoscopeSimulator,
    ZhejiangEndoscopeSimulatorConfig,
)
from tests.agent_process import AgentProcess
from tests.helpers import ZHEJIANG_KEY, ZHEJIANG_SECRET

# Fuzz tests in the suite are seeded and repeatable; `-m slow` runs their long versions.
settings.register_profile(
    "suite",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("suite")


@pytest.fixture(autouse=True)
async def no_lingering_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves tasks running: every component must stop what it starts."""
    before = asyncio.all_tasks()
    yield
    for agent in list(AgentProcess.live):  # a failed test must not leave a daemon running
        await agent.kill()
    lingering = [
        t for t in asyncio.all_tasks() - before if t is not asyncio.current_task() and not t.done()
    ]
    for task in lingering:
        task.cancel()
    assert not lingering, f"tasks still running after the test: {lingering}"


@pytest.fixture
async def open_journal(tmp_path: Path) -> AsyncIterator[type[Journal]]:
    """A factory `await open_journal(handlers)`-style helper that closes what it opened."""
    opened: list[Journal] = []

    class Factory(Journal):
        @classmethod
        async def open(  # type: ignore[override]
            cls, path: Path | None = None, handlers: tuple[Handler, ...] = (), **kw: int
        ) -> Journal:
            journal = await Journal.open(path or tmp_path / "journal.db", handlers, **kw)
            opened.append(journal)
            return journal

    yield Factory
    for journal in opened:
        await journal.close()


@pytest.fixture
async def zhejiang_platform() -> AsyncIterator[ZhejiangEndoscopeSimulator]:
    """The Zhejiang endoscope platform simulator on a free port (tests.helpers.ZHEJIANG_*)."""
    simulator = ZhejiangEndoscopeSimulator(
        "platform",
        ZhejiangEndoscopeSimulatorConfig(
            type="zhejiang_endoscope",
            port=0,
            access_key=ZHEJIANG_KEY,
            access_secret=SecretStr(ZHEJIANG_SECRET),
        ),
    )
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def cloud() -> AsyncIterator[HttpCloud]:
    """The HTTP cloud simulator on a free port, tokens required."""
    simulator = HttpCloud(
        "cloud",
        HttpCloudConfig(
            type="http_cloud",
            port=0,
            client_id="agent",
            client_secret=SecretStr("s3cret-cloud-key"),
        ),
    )
    await simulator.start()
    yield simulator
    await simulator.stop()
