"""The running agent applies the journal's retention at start and every purge_interval: raw
events after [journal] retention_days, reprocessing records after the domain's record_days."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any

from structlog.testing import capture_logs

from agent.config import load_config
from agent.journal.database import incremental, open_database
from agent.journal.retention import JournalKeeper, Pass
from agent.plugins import PLUGIN_KINDS
from agent.runtime import Agent
from tests.helpers import eventually
from tests.integration.test_runtime import ReadyNotifier
from tests.unit.test_zhejiang_feeders import config_text


async def test_the_agent_purges_old_events_and_reprocessing_records_by_their_periods(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(
        '[agent]\nstate_dir = "state"\n[journal]\nretention_days = 1096\n'
        + config_text(domain={"record_days": 30}),
        encoding="utf-8",
    )
    state = tmp_path / "state"
    state.mkdir()
    now = datetime.now(UTC)
    old_event, old_use, recent = now - timedelta(days=1200), now - timedelta(days=40), now
    with closing(open_database(state / "journal.db")) as conn:
        conn.executemany(
            "INSERT INTO events (id, kind, source, occurred_at, received_at, payload)"
            " VALUES (?, 'rfid.read', 'use', ?, ?, '{}')",
            [
                (name, at.isoformat(), at.isoformat())
                for name, at in (("e-old", old_event), ("e-new", recent))
            ],
        )
        conn.executemany(
            "INSERT INTO rp_uses (scope, used_at, patient_id, station, event_id)"
            " VALUES ('GIF-001', ?, ?, 'use', 'e')",
            [(old_use.isoformat(), "P-OLD"), (recent.isoformat(), "P-NEW")],
        )
    notifier = ReadyNotifier()
    agent = Agent(load_config(path, PLUGIN_KINDS), notifier)
    with capture_logs() as logs:
        running = asyncio.create_task(agent.run())
        try:
            async with asyncio.timeout(20):
                await notifier.ready.wait()

            def kept() -> tuple[list[str], list[str]] | None:
                with closing(sqlite3.connect(state / "journal.db")) as conn:
                    events = [
                        r[0] for r in conn.execute("SELECT id FROM events WHERE id LIKE 'e-%'")
                    ]
                    uses = [r[0] for r in conn.execute("SELECT patient_id FROM rp_uses")]
                return (events, uses) if "e-old" not in events and "P-OLD" not in uses else None

            # The pass's line comes after its vacuum: a stop before it would cut the pass short.
            async def passed() -> list[Any]:
                return [e for e in logs if e["event"] == "journal.purged"]

            purged = await eventually(passed)
            assert await asyncio.to_thread(kept) == (["e-new"], ["P-NEW"])
        finally:
            agent.request_stop()
            await running
    assert purged and purged[0]["events"] == 1 and purged[0]["reprocessing.uses"] == 1
    with closing(sqlite3.connect(state / "journal.db")) as conn:
        assert incremental(conn)  # created by this build


async def test_a_failed_pass_is_logged_and_the_next_interval_tries_again(tmp_path, monkeypatch):
    path = tmp_path / "agent.toml"
    path.write_text(
        '[agent]\nstate_dir = "state"\n[journal]\npurge_interval = 0.1\n' + config_text(),
        encoding="utf-8",
    )
    passes = []
    run_pass = JournalKeeper.run_pass

    async def failing_once(self: JournalKeeper) -> Pass:
        passes.append(1)
        if len(passes) == 1:
            raise sqlite3.OperationalError("database or disk is full")
        return await run_pass(self)

    monkeypatch.setattr(JournalKeeper, "run_pass", failing_once)
    notifier = ReadyNotifier()
    agent = Agent(load_config(path, PLUGIN_KINDS), notifier)
    with capture_logs() as logs:
        running = asyncio.create_task(agent.run())
        try:
            await eventually(lambda: asyncio.sleep(0.01, result=len(passes) >= 3))
        finally:
            agent.request_stop()
            await running
    failed = [e for e in logs if e["event"] == "journal.purge_failed"]
    assert [e["error"] for e in failed] == ["database or disk is full"]
