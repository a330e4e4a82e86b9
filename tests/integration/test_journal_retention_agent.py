"""The running agent applies the journal's retention at start and every purge_interval: raw
events after [journal] retention_days, reprocessing records after the domain's record_days, the
imaging index, exams and lab records after theirs."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import MutableMapping
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
from tests.unit.test_imaging_lab_retention import add_exam, add_image, stored_long_ago
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


async def passed(logs: list[MutableMapping[str, Any]]) -> None:
    """Once a retention pass has logged what it removed (after its last kind and vacuum)."""
    await eventually(
        lambda: asyncio.sleep(0.01, result=any(e["event"] == "journal.purged" for e in logs))
    )


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


async def test_the_agent_purges_old_image_index_rows_exams_and_their_files(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(
        '[agent]\nstate_dir = "state"\n[uplinks.city]\ntype = "http"\n'
        'url = "https://cloud.example/ingest"\n[domains.imaging]\ntype = "imaging"\n'
        'forward_to = ["city"]\nindex_keep_days = 30\nrecord_days = 365\n'
        '[domains.lab]\ntype = "lab"\nrecord_days = 365\n',
        encoding="utf-8",
    )
    state = tmp_path / "state"
    (state / "exam-files").mkdir(parents=True)
    stored_long_ago(state / "exam-files" / "old.pdf")
    now = datetime.now(UTC)
    old, recent = (now - timedelta(days=400)).isoformat(), now.isoformat()
    with closing(open_database(state / "journal.db")) as conn:
        for sop, purged in (("1.1", old), ("1.2", None)):
            add_image(conn, sop, f"S{sop}", f"ST{sop}", "P1", purged)
        for no, at in (("E-old", old), ("E-new", recent)):
            add_exam(conn, no, at, ["old.pdf"] if no == "E-old" else [])
        conn.execute(
            "INSERT INTO lab_records (kind, record_id, record, digest, updated_at, event_id)"
            " VALUES ('qc', 'Q-old', '{}', 'd', ?, 'e')",
            (old,),
        )
    agent = Agent(load_config(path, PLUGIN_KINDS), ReadyNotifier())
    with capture_logs() as logs:
        running = asyncio.create_task(agent.run())
        try:
            await passed(logs)
        finally:
            agent.request_stop()
            await running
    done = next(e for e in logs if e["event"] == "journal.purged")
    assert done["imaging.index"] == 1 and done["imaging.exams"] == 1 and done["lab.records"] == 1
    with closing(sqlite3.connect(state / "journal.db")) as conn:
        assert conn.execute("SELECT sop_uid FROM im_instances").fetchall() == [("1.2",)]
        assert conn.execute("SELECT patient_id FROM im_patients").fetchall() == [("P1",)]
        assert conn.execute("SELECT exam_no FROM im_exams").fetchall() == [("E-new",)]
    assert done["files_removed"] == 1 and not (state / "exam-files" / "old.pdf").exists()
