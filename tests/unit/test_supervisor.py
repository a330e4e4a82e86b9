"""Supervision: a crashing component is restarted with backoff; down and recovered logged once."""

from __future__ import annotations

import asyncio
import itertools

from structlog.testing import capture_logs

from agent.config import SupervisorSection
from agent.supervisor import ComponentState, Supervisor


async def test_crashing_component_is_restarted_and_logged_once_each_way():
    supervisor = Supervisor(
        SupervisorSection(restart_initial=0.02, restart_max=0.08, stable_after=0.05)
    )
    starts: list[float] = []
    healthy = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def flaky() -> None:
        starts.append(loop.time())
        if len(starts) <= 4:
            raise ConnectionError("reader unplugged")
        healthy.set()
        await asyncio.Event().wait()  # runs until cancelled

    with capture_logs() as logs:
        supervisor.start("source:reader", flaky)
        await asyncio.wait_for(healthy.wait(), 5)
        async with asyncio.timeout(5):
            while supervisor.states["source:reader"] is not ComponentState.RUNNING:
                await asyncio.sleep(0.01)
        await supervisor.stop()

    events = [entry["event"] for entry in logs]
    assert events.count("component.down") == 1
    assert events.count("component.recovered") == 1
    assert events.index("component.down") < events.index("component.recovered")
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Lower bounds only (a loaded machine can only make gaps longer): 0.02, 0.04, 0.08, 0.08.
    expected = (0.02, 0.04, 0.08, 0.08)
    assert all(gap >= delay * 0.95 for gap, delay in zip(gaps, expected, strict=True)), gaps


async def test_component_that_finishes_is_not_restarted():
    supervisor = Supervisor(SupervisorSection())
    runs = 0

    async def once() -> None:
        nonlocal runs
        runs += 1

    supervisor.start("source:batch", once)
    async with asyncio.timeout(5):
        while supervisor.states["source:batch"] is not ComponentState.FINISHED:
            await asyncio.sleep(0.01)
    await supervisor.stop()
    assert runs == 1
