"""Outbox counts without a full scan (schema v7) match a full count after every state change."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

from agent.journal import outbox, queries
from agent.journal.database import open_database
from agent.journal.retention import settled_messages
from agent.journal.transaction import Transaction
from agent.journal.writer import Journal
from agent.observe import outbox_counts
from tests.journal_versions import migrate_until


def full_count(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for uplink, state, n in conn.execute(
        "SELECT uplink, state, COUNT(*) FROM outbox GROUP BY uplink, state"
    ):
        counts.setdefault(uplink, {})[state] = n
    return counts


def enqueue(conn: sqlite3.Connection, uplink: str, keys: range) -> None:
    tx = Transaction(conn, None, set())
    for n in keys:
        tx.enqueue(uplink=uplink, kind="demo", order_key=f"k{n}", dedupe_key=f"d{n}", payload={})


async def test_every_transition_keeps_the_tally_equal_to_a_full_count(tmp_path: Path):
    path = tmp_path / "journal.db"
    journal = await Journal.open(path)
    await journal.run(lambda c: enqueue(c, "cloud", range(10)))
    await journal.run(lambda c: enqueue(c, "cloud", range(5)))  # duplicates: ignored
    await journal.run(lambda c: enqueue(c, "bus", range(3)))
    leased = await journal.run(lambda c: outbox.lease(c, "cloud", 8, block_on_dead=False, now=1e12))
    ids = [m.id for m in leased]

    def settle(conn: sqlite3.Connection) -> None:
        for message_id in ids[:4]:
            outbox.mark_delivered(conn, message_id, "ok")
        outbox.mark_retry(conn, ids[4], "HTTP 503", 1e12, None)
        outbox.mark_dead(conn, ids[5], "HTTP 422", None)
        outbox.mark_dead(conn, ids[6], "HTTP 422", None)
        outbox.release(conn, ids[7:])

    await journal.run(settle)
    await journal.run(lambda c: outbox.lease(c, "bus", 1, block_on_dead=False, now=1e12))
    await journal.run(outbox.recover_inflight)
    assert await journal.run(lambda c: outbox.tally(c) == full_count(c))
    counts, oldest = await journal.run(outbox_counts)
    assert counts == {
        "cloud": {"delivered": 4, "pending": 4, "dead": 2},
        "bus": {"pending": 3},
    }
    assert set(oldest) == {"cloud", "bus"}
    purged = await journal.run(lambda c: settled_messages(c, time.time() + 60, 100))
    assert purged == (4, False)
    await journal.close()

    async with queries.connect(path) as db:
        await queries.retry(db, [ids[5]], actor="nurse", payload=None)
        await queries.discard(db, [ids[6]], actor="nurse", reason="sent by hand")
    with closing(sqlite3.connect(path)) as conn:
        assert (
            outbox.tally(conn)
            == full_count(conn)
            == {
                "cloud": {"pending": 5, "discarded": 1},
                "bus": {"pending": 3},
            }
        )


def test_the_migration_counts_the_messages_already_queued(tmp_path: Path):
    path = tmp_path / "journal.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        migrate_until(conn, below=7)
        enqueue(conn, "cloud", range(3))
        conn.execute("UPDATE outbox SET state = 'dead' WHERE dedupe_key = 'd0'")
    with closing(open_database(path)) as conn:
        assert outbox.tally(conn) == {"cloud": {"dead": 1, "pending": 2}}
