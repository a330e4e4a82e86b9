"""The journal's retention: what goes after its keep period, what stays because something still
needs it, in small batches, and the freed pages handed back to the filesystem."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.events import Event
from agent.journal import database, outbox
from agent.journal.retention import JournalKeeper, Settings
from agent.journal.writer import Journal
from agent.reprocessing.handler import ReprocessingHandler
from agent.reprocessing.lookback import Question, answer
from agent.reprocessing.retention import purges
from tests.unit.test_journal import Broken, Forward, rows
from tests.unit.test_reprocessing import T0, Centre, make_config

THREE_YEARS = 1096


def keeper(journal: Journal, batch: int = 500, vacuum_pages: int = 256) -> JournalKeeper:
    settings = Settings(THREE_YEARS, batch=batch, pause=0, vacuum_pages=vacuum_pages)
    return JournalKeeper(journal.run, settings)


async def test_old_events_go_unless_an_open_message_or_failure_still_needs_them(
    open_journal, tmp_path
):
    journal = await open_journal.open(handlers=(Forward(), Broken()))
    old = datetime.now(UTC) - timedelta(days=1200)
    events = [Event("test.tap", f"r{i}", {"n": i}, received_at=old) for i in range(4)]
    failed = Event("test.boom", "r5", {"n": 5}, received_at=old)
    await journal.ingest([*events, failed])
    leased = await journal.run(lambda c: outbox.lease(c, "cloud", 4, block_on_dead=False, now=9e12))
    await journal.run(lambda c: outbox.mark_delivered(c, leased[0].id, "ok"))
    await journal.run(lambda c: outbox.mark_dead(c, leased[1].id, "bad", None))
    await journal.run(lambda c: outbox.release(c, [leased[2].id, leased[3].id]))
    await journal.run(lambda c: c.execute("UPDATE outbox SET settled_at = 1"))  # long ago
    recent = Event("test.tap", "r9", {"n": 9})
    await journal.ingest([recent])

    done = await keeper(journal).run_pass()

    db = tmp_path / "journal.db"
    assert done.rows == {"messages": 1, "events": 1}  # the delivered message and its event
    kept = {r[0] for r in rows(db, "SELECT id FROM events")}
    # Dead and pending messages may be edited or replayed, a failed handler replayed: their
    # events stay however old; so do the messages themselves.
    assert kept == {events[1].id, events[2].id, events[3].id, failed.id, recent.id}
    states = sorted(str(r[0]) for r in rows(db, "SELECT state FROM outbox"))
    assert states == ["dead", "pending", "pending", "pending", "pending"]  # one: `recent`


async def test_events_still_needed_at_the_front_do_not_stop_a_pass(open_journal, tmp_path):
    journal = await open_journal.open(handlers=(Forward(),))
    old = datetime.now(UTC) - timedelta(days=1200)
    pending = [Event("test.tap", "a", {"n": i}, received_at=old) for i in range(5)]
    await journal.ingest(pending)  # their messages are pending: the events stay
    await journal.run(lambda c: c.execute("DELETE FROM outbox"))
    gone = [Event("other.kind", "b", {"n": i}, received_at=old) for i in range(7)]
    await journal.ingest(gone)
    await journal.run(
        lambda c: c.executemany(
            "INSERT INTO outbox (uplink, kind, order_key, dedupe_key, payload, event_id,"
            " created_at, next_attempt_at) VALUES ('cloud', 'k', 'o', ?, '{}', ?, 1, 1)",
            [(e.id, e.id) for e in pending],
        )
    )

    done = await keeper(journal, batch=2).run_pass()

    assert done.rows == {"events": 7}
    assert done.writes > 6  # two rows per transaction, each its own short write
    kept = {r[0] for r in rows(tmp_path / "journal.db", "SELECT id FROM events")}
    assert kept == {e.id for e in pending}


async def test_an_event_journaled_while_the_clock_was_ahead_only_delays_the_ones_behind(
    open_journal, tmp_path
):
    journal = await open_journal.open()
    now = datetime.now(UTC)
    old, ahead = now - timedelta(days=1200), now + timedelta(days=30)
    ordered = [
        Event("test.tap", "r1", {"n": 1}, received_at=old),
        Event("test.tap", "r2", {"n": 2}, received_at=ahead),  # journaled while the clock ran fast
        Event("test.tap", "r3", {"n": 3}, received_at=old),
        Event("test.tap", "r4", {"n": 4}),
    ]
    for event in ordered:
        await journal.ingest([event])

    await keeper(journal).run_pass()

    kept = {r[0] for r in rows(tmp_path / "journal.db", "SELECT id FROM events")}
    assert kept == {ordered[1].id, ordered[3].id}


async def test_reprocessing_records_go_after_their_period_but_what_a_lookback_reaches_stays(
    open_journal, tmp_path
):
    journal = await open_journal.open(handlers=(ReprocessingHandler("endo", make_config()),))
    centre = Centre(journal, tmp_path / "journal.db")
    await centre.tap("R1", "BADGE01", after=0)
    await centre.cycle()  # an old cycle and the use after it
    await centre.tap("R9", "PAT-0001")
    await centre.tap("R9", "00D507D0")
    await centre.cycle(tag="00AABBCC")  # old too, but the scope's current cycle: never used since
    await centre.tap("R1", "BADGE01", after=40 * 86400)
    await centre.cycle()
    await centre.tap("R9", "PAT-0002")
    await centre.tap("R9", "00D507D0")
    late = (T0 + timedelta(days=40)).isoformat()
    await journal.run(lambda c: add_washer_runs_and_tests(c, T0.isoformat(), late))
    now = (T0 + timedelta(days=41)).timestamp()

    kinds = {kind: (30.0, make) for kind, make in purges().items()}
    settings = Settings(days=THREE_YEARS, pause=0, batch=3)
    done = await JournalKeeper(journal.run, settings, kinds, clock=lambda: now).run_pass()

    assert done.rows == {
        "reprocessing.uses": 1,
        "reprocessing.cycles": 1,
        "reprocessing.washer_runs": 1,
        "reprocessing.quality_tests": 2,
    }
    db = tmp_path / "journal.db"
    with closing(sqlite3.connect(db)) as conn:
        found = answer(conn, Question("scope", "GIF-001", since=T0))
        assert [e["use"]["patient_id"] for e in found] == ["PAT-0002"]
        assert found[0]["cycle"]["steps"][0]["kind"] == "pre_clean"
        scopes = dict(conn.execute("SELECT scope, COUNT(*) FROM rp_cycles GROUP BY scope"))
        assert scopes == {"GIF-001": 1, "CF-002": 1}
        orphans = (
            "SELECT COUNT(*) FROM rp_steps WHERE clean_id NOT IN (SELECT clean_id FROM rp_cycles)"
        )
        assert conn.execute(orphans).fetchone() == (0,)
        assert list(conn.execute("SELECT cycle_number FROM washer_cycles ORDER BY 1")) == [("2",)]
        # The latest test of a subject, and its latest pass, stay however old.
        assert list(conn.execute("SELECT subject, tested_at FROM quality_tests ORDER BY id")) == [
            ("OPA-1", "2020-01-02"),
            ("OPA-1", "2020-01-03"),
        ]


def add_washer_runs_and_tests(conn: sqlite3.Connection, old: str, late: str) -> None:
    conn.executemany(
        "INSERT INTO washer_cycles (washer, cycle_number, started_at, ended_at, result, event_id)"
        " VALUES ('W1', ?, ?, ?, 'pass', 'e')",
        [("1", old, old), ("2", late, late)],  # not linked to a cycle
    )
    conn.executemany(
        "INSERT INTO quality_tests (kind, subject, tested_at, passed, recorded_by, payload,"
        " event_id) VALUES ('disinfectant', 'OPA-1', ?, ?, 'n', '{}', ?)",
        [
            ("2020-01-01", 1, "q1"),
            ("2020-01-01T12", 0, "q2"),
            ("2020-01-02", 1, "q3"),
            ("2020-01-03", 0, "q4"),
        ],
    )


async def test_freed_pages_go_back_to_the_filesystem_a_step_at_a_time(open_journal, tmp_path):
    journal = await open_journal.open()
    old = datetime.now(UTC) - timedelta(days=1200)
    for _ in range(20):
        await journal.ingest(
            [Event("test.tap", "r", {"n": "x" * 500}, received_at=old) for _n in range(100)]
        )
    db = tmp_path / "journal.db"
    before = await journal.run(lambda c: c.execute("PRAGMA page_count").fetchone()[0])

    done = await keeper(journal, batch=400, vacuum_pages=64).run_pass()

    after, free = await journal.run(
        lambda c: (
            c.execute("PRAGMA page_count").fetchone()[0],
            c.execute("PRAGMA freelist_count").fetchone()[0],
        )
    )
    assert done.rows == {"events": 2000}
    assert done.pages > 64 and after <= before - done.pages + 1
    assert free <= 64  # a step's worth kept for the next inserts
    await journal.close()  # the last connection checkpoints the WAL into the file
    assert db.stat().st_size < before * database.PAGE_SIZE / 2


def plain_journal(path: Path) -> None:
    """A journal as agents before v18 created it: no auto-vacuum."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA page_size={database.PAGE_SIZE}")
        conn.execute("CREATE TABLE before_v18 (x)")
    assert not database.incremental(sqlite3.connect(path))


async def test_a_small_journal_is_converted_to_incremental_vacuum_at_start(open_journal, tmp_path):
    path = tmp_path / "journal.db"
    plain_journal(path)
    database_conn = database.open_database(path)  # a command's open: never converts
    assert not database.incremental(database_conn)
    database_conn.close()

    journal = await open_journal.open(path)

    assert await journal.run(database.incremental)


async def test_a_big_journal_waits_for_the_compact_command(open_journal, tmp_path, monkeypatch):
    path = tmp_path / "journal.db"
    plain_journal(path)
    monkeypatch.setattr(database, "CONVERT_AT_START_BYTES", 0)
    journal = await open_journal.open(path)
    assert not await journal.run(database.incremental)  # freed pages are reused meanwhile
    await journal.close()

    with closing(database.open_database(path)) as conn:
        assert database.compact(conn)
        assert database.incremental(conn)
        assert not database.compact(conn)  # once is enough
