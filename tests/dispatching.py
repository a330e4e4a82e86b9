"""A real Dispatcher around one uplink for tests, and the outbox as the tests read it."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from agent.dispatch.dispatcher import Dispatcher, DispatchSettings
from agent.dispatch.uplink import Uplink
from agent.journal.writer import Journal


@asynccontextmanager
async def run_dispatcher(
    journal: Journal, uplink: Uplink, settings: DispatchSettings, grace: float = 2.0
) -> AsyncIterator[Dispatcher]:
    """Run a dispatcher woken by the journal's commits; stop it and its task afterwards."""
    dispatcher = Dispatcher(journal, uplink, settings, rng=random.Random(1))
    journal.on_commit(lambda uplinks: dispatcher.wake() if uplink.name in uplinks else None)
    task = asyncio.create_task(dispatcher.run(), name="dispatcher")
    try:
        yield dispatcher
    finally:
        await dispatcher.stop(grace=grace)
        async with asyncio.timeout(2 * grace + 1):
            await task


async def outbox_rows(journal: Journal) -> dict[str, dict[str, Any]]:
    """Every outbox row by dedupe key: kind, state, attempts, last error, response."""

    def read(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
        cursor = conn.execute(
            "SELECT kind, dedupe_key, state, attempts, last_error, response FROM outbox ORDER BY id"
        )
        columns = [c[0] for c in cursor.description]
        return {row[1]: dict(zip(columns, row, strict=True)) for row in cursor.fetchall()}

    return await journal.run(read)
