"""The journal: durable ingest, handlers in the same transaction, migrations, append-only."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from agent.errors import JournalCorruptError, JournalError, UnstorableEventError
from agent.events import Event
from agent.journal import database, failures
from agent.journal.database import latest_version, open_database
from agent.journal.transaction import Transaction


class Forward:
    name = "forward"
    kinds = ("test.*",)

    def handle(self, tx: Transaction, event: Event) -> None:
        tx.enqueue(
            uplink="cloud",
            kind=event.kind,
            order_key=event.source,
            dedupe_key=event.id,
            payload={"n": event.payload["n"]},
        )


class Broken:
    name = "broken"
    kinds = ("test.boom",)

    def handle(self, tx: Transaction, event: Event) -> None:
        tx.enqueue(uplink="other", kind="x", order_key="k", dedupe_key=event.id, payload={})
        raise ValueError("handler bug")


def rows_of_text(path: Path, sql: str) -> list[tuple[str, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


async def test_ingest_commits_event_and_its_messages_together(open_journal, tmp_path):
    journal = await open_journal.open(handlers=(Forward(),))
    event = Event("test.tap", "reader-1", {"n": 1})
    assert await journal.ingest([event]) == [True]
    # Another connection sees both at once: the commit happened before ingest returned.
    db = tmp_path / "journal.db"
    assert rows(db, "SELECT id, kind FROM events") == [(event.id, "test.tap")]
    assert rows(db, "SELECT uplink, dedupe_key, state FROM outbox") == [
        ("cloud", event.id, "pending")
    ]


async def test_resent_event_is_stored_once_and_handled_once(open_journal, tmp_path):
    journal = await open_journal.open(handlers=(Forward(),))
    event = Event("test.tap", "reader-1", {"n": 1})
    assert await journal.ingest([event]) == [True]
    assert await journal.ingest([event]) == [False]
    db = tmp_path / "journal.db"
    assert rows(db, "SELECT COUNT(*) FROM events") == [(1,)]
    assert rows(db, "SELECT COUNT(*) FROM outbox") == [(1,)]


async def test_concurrent_ingests_share_commits(open_journal):
    journal = await open_journal.open(handlers=(Forward(),))
    events = [Event("test.tap", f"r{i % 4}", {"n": i}) for i in range(400)]
    results = await asyncio.gather(*(journal.ingest([e]) for e in events))
    assert all(r == [True] for r in results)
    assert journal.commits < len(events)  # group commit: far fewer fsyncs than events


async def test_failing_handler_keeps_the_event_and_records_the_failure(open_journal, tmp_path):
    journal = await open_journal.open(handlers=(Forward(), Broken()))
    event = Event("test.boom", "reader-1", {"n": 7})
    assert await journal.ingest([event]) == [True]
    db = tmp_path / "journal.db"
    assert rows(db, "SELECT id FROM events") == [(event.id,)]
    # The good handler's message stays; the broken handler's partial write is rolled back.
    assert rows(db, "SELECT uplink FROM outbox") == [("cloud",)]
    assert rows(db, "SELECT event_id, handler, error FROM handler_failures") == [
        (event.id, "broken", "ValueError: handler bug")
    ]
    # Loud, not only a row: an open alert says what failed and how to replay it.
    ((code, severity, message),) = rows_of_text(
        db, "SELECT code, severity, message FROM alerts WHERE acknowledged_at IS NULL"
    )
    assert (code, severity) == ("handler_failed", "error")
    assert f"broken handler failed on event {event.id}" in message
    assert "edge-agent handlers replay 1" in message


class Flaky:
    """Fails until it is fixed, as a handler does until the agent is upgraded."""

    name = "flaky"
    kinds = ("test.*",)

    def __init__(self) -> None:
        self.fixed = False

    def handle(self, tx: Transaction, event: Event) -> None:
        if not self.fixed:
            raise OverflowError("date value out of range")
        tx.enqueue(
            uplink="cloud", kind="record", order_key="k", dedupe_key=event.id, payload={"ok": 1}
        )


async def test_a_failed_handler_is_replayed_on_request_once_fixed(open_journal, tmp_path):
    flaky = Flaky()
    journal = await open_journal.open(handlers=(flaky,))
    woken: list[set[str]] = []
    journal.on_commit(woken.append)
    event = Event("test.tap", "api", {"n": 1})
    await journal.ingest([event])
    db = tmp_path / "journal.db"
    assert rows(db, "SELECT COUNT(*) FROM outbox") == [(0,)]
    assert await journal.replay_requested() == []  # nobody asked yet

    await journal.run(partial(failures.request_replay, failure_ids=None, actor="it"))
    (again,) = await journal.replay_requested()  # still broken: stays open, asked again later
    assert again.error == "OverflowError: date value out of range"
    ((attempts, requested),) = rows(
        db, "SELECT attempts, replay_requested_at FROM handler_failures"
    )
    assert (attempts, requested) == (2, None)

    flaky.fixed = True
    await journal.run(partial(failures.request_replay, failure_ids=[1], actor="it"))
    assert [r.error for r in await journal.replay_requested()] == [""]
    assert rows(db, "SELECT uplink, dedupe_key, event_id FROM outbox") == [
        ("cloud", event.id, event.id)
    ]
    assert {"cloud"} in woken  # its dispatcher is woken, as after an ingest
    assert rows(db, "SELECT resolved_at IS NOT NULL FROM handler_failures") == [(1,)]
    assert rows(db, "SELECT acknowledged_by FROM alerts") == [("edge-agent",)]
    assert rows(db, "SELECT actor, action FROM audit") == [
        ("it", "handler.replay"),
        ("it", "handler.replay"),
    ]
    assert await journal.replay_requested() == []  # resolved: never run twice


async def test_an_event_json_cannot_hold_is_refused_whole(open_journal, tmp_path):
    journal = await open_journal.open(handlers=(Forward(),))
    with pytest.raises(UnstorableEventError, match=r"test\.tap event from api: Out of range"):
        await journal.ingest([Event("test.tap", "api", {"n": float("inf")})])
    too_early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
    with pytest.raises(UnstorableEventError, match=r"test\.tap event from api"):
        await journal.ingest([Event("test.tap", "api", {"n": 1}, occurred_at=too_early)])
    assert rows(tmp_path / "journal.db", "SELECT COUNT(*) FROM events") == [(0,)]


async def test_failing_job_does_not_abort_the_others_in_its_batch(open_journal):
    journal = await open_journal.open()

    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO audit (at, actor, action, target) VALUES (1, 'a', 'b', 'c')")
        raise RuntimeError("nope")

    def count(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0])

    results = await asyncio.gather(journal.run(bad), journal.run(count), return_exceptions=True)
    assert isinstance(results[0], RuntimeError)
    assert results[1] == 0


async def test_raw_events_are_append_only(open_journal):
    journal = await open_journal.open()
    await journal.ingest([Event("test.tap", "r", {"n": 1})])
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        await journal.run(lambda conn: conn.execute("UPDATE events SET kind = 'forged'"))


async def test_closed_journal_refuses_writes(open_journal):
    journal = await open_journal.open()
    await journal.close()
    with pytest.raises(JournalError):
        await journal.ingest([Event("test.tap", "r", {"n": 1})])


def test_open_migrates_to_latest_and_is_idempotent(tmp_path):
    path = tmp_path / "j.db"
    open_database(path).close()
    conn = open_database(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == latest_version()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    conn.close()


def test_database_from_a_newer_agent_is_refused(tmp_path):
    path = tmp_path / "j.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version={latest_version() + 1}")
    with pytest.raises(JournalError, match="newer than this agent"):
        open_database(path)


def test_corrupt_database_fails_the_integrity_check(tmp_path):
    path = tmp_path / "j.db"
    open_database(path).close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # wreck the first page's b-tree
    path.write_bytes(bytes(data))
    with pytest.raises(JournalCorruptError, match="integrity check") as refused:
        open_database(path)
    steps = str(refused.value)  # what to do, not only what is wrong
    assert f"cp -a {tmp_path}" in steps and "edge-agent restore" in steps and ".recover" in steps


async def test_a_thread_ingests_straight_to_the_writer_and_returns_after_the_commit(
    open_journal, tmp_path
):
    journal = await open_journal.open(handlers=(Forward(),))
    first = Event("test.tap", "scp", {"n": 1})
    second = Event("test.tap", "scp", {"n": 2})

    def from_thread() -> list[list[bool]]:
        results = [journal.ingest_from_thread([first], 10.0)]
        # Another connection sees the row as soon as the call returns: it waited for the commit.
        seen = rows(tmp_path / "journal.db", "SELECT id FROM events")
        assert seen == [(first.id,)]
        results.append(journal.ingest_from_thread([first, second], 10.0))
        return results

    assert await asyncio.to_thread(from_thread) == [[True], [False, True]]
    assert rows(tmp_path / "journal.db", "SELECT COUNT(*) FROM outbox") == [(2,)]


async def test_a_thread_hears_a_failed_or_closed_journal(open_journal):
    journal = await open_journal.open()
    bad = Event("test.tap", "scp", {"n": object()})  # cannot be encoded: its job fails
    with pytest.raises(TypeError):  # the job's own error, as `ingest` would raise it
        await asyncio.to_thread(journal.ingest_from_thread, [bad], 10.0)
    assert await journal.ingest([Event("test.tap", "scp", {"n": 3})]) == [True]
    await journal.close()
    with pytest.raises(JournalError):
        await asyncio.to_thread(journal.ingest_from_thread, [Event("test.tap", "r", {})], 10.0)


class _AlertsUnreadable:
    """The writer's connection, failing once to read the alerts after a commit."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.failed = False

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.startswith("SELECT id, severity") and not self.failed:
            self.failed = True
            raise sqlite3.OperationalError("disk I/O error")
        return self.conn.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self.conn, name)


async def test_a_commit_is_reported_committed_even_if_reading_its_alerts_fails(
    open_journal, tmp_path
):
    journal = await open_journal.open(handlers=(Forward(),))
    journal._conn = _AlertsUnreadable(journal._conn)
    event = Event("test.tap", "scp", {"n": 1})
    # A failure here would make a DICOM peer resend an image whose event is already journaled.
    assert await journal.ingest([event]) == [True]
    assert journal._conn.failed
    assert rows(tmp_path / "journal.db", "SELECT id FROM events") == [(event.id,)]
    assert await journal.ingest([Event("test.tap", "scp", {"n": 2})]) == [True]


def test_a_new_journal_gets_small_pages_and_an_existing_one_keeps_its_own(tmp_path):
    new = open_database(tmp_path / "new.db")
    assert new.execute("PRAGMA page_size").fetchone()[0] == database.PAGE_SIZE
    new.close()
    old_path = tmp_path / "old.db"
    with closing(sqlite3.connect(old_path, isolation_level=None)) as old:
        old.execute("PRAGMA page_size=4096")
        old.execute("PRAGMA journal_mode=WAL")
        for version, sql in database.migrations()[:10]:  # a v10 journal (before issue 21)
            for statement in database.split_statements(sql):
                old.execute(statement)
            old.execute(f"PRAGMA user_version={version}")
    upgraded = open_database(old_path)
    assert upgraded.execute("PRAGMA page_size").fetchone()[0] == 4096
    assert upgraded.execute("PRAGMA user_version").fetchone()[0] == latest_version()
    upgraded.close()


async def test_commits_go_on_while_a_checkpoint_flushes(open_journal, monkeypatch, tmp_path):
    # A checkpoint flushes the WAL and then the database: the writer must not wait for it.
    from agent.journal.checkpointer import Checkpointer

    entered, held = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    real = Checkpointer._checkpoint

    def slow_checkpoint(self: Checkpointer, conn: sqlite3.Connection, commits: int) -> None:
        loop.call_soon_threadsafe(entered.set)
        asyncio.run_coroutine_threadsafe(held.wait(), loop).result()
        real(self, conn, commits)

    monkeypatch.setattr(Checkpointer, "_checkpoint", slow_checkpoint)
    journal = await open_journal.open(handlers=(Forward(),))
    for n in range(20):  # the first checkpoint is asked for after 16 commits
        await journal.ingest([Event("test.tap", "reader-1", {"n": n})])
    await asyncio.wait_for(entered.wait(), 10)
    for n in range(20, 40):  # every one committed while the checkpoint is held
        assert await journal.ingest([Event("test.tap", "reader-1", {"n": n})]) == [True]
    assert rows(tmp_path / "journal.db", "SELECT COUNT(*) FROM events") == [(40,)]
    held.set()
    await journal.close()
    assert journal.wal_frames > 0
