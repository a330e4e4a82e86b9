"""Outbox state transitions; each function runs on the writer thread inside a group commit."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

OPEN_STATES = ("pending", "inflight")


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One message to deliver to one uplink."""

    id: int
    uplink: str
    kind: str
    order_key: str
    dedupe_key: str
    payload: dict[str, Any]
    attempts: int  # including the attempt this lease is for
    created_at: float
    event_id: str | None
    unreadable: int = 0  # the platform's unreadable answers in a row before this attempt


def lease(
    conn: sqlite3.Connection,
    uplink: str,
    limit: int,
    *,
    block_on_dead: bool,
    now: float,
    dead_blocks: Iterable[str] = (),
    run: int = 1,
) -> list[OutboxMessage]:
    """Mark up to `limit` due messages in flight: each the oldest open message of its order key,
    followed (when `run` > 1) by up to `run - 1` of its key's next ones, due and pending, in order.

    A dead letter holds back the rest of its key when `block_on_dead`, or when its kind is one of
    `dead_blocks` (e.g. a refused exam push: its images must not go out without it).
    """
    blocking = ("pending", "inflight", "dead") if block_on_dead else OPEN_STATES
    kinds = tuple(dead_blocks)
    marks, kind_marks = ",".join("?" * len(blocking)), ",".join("?" * len(kinds)) or "NULL"
    rows = conn.execute(
        "SELECT id, uplink, kind, order_key, dedupe_key, payload, attempts, created_at, event_id,"
        " unreadable FROM outbox AS o"
        " WHERE o.uplink = ? AND o.state = 'pending' AND o.next_attempt_at <= ?"
        " AND NOT EXISTS (SELECT 1 FROM outbox AS p WHERE p.uplink = o.uplink"
        f"   AND p.order_key = o.order_key AND p.id < o.id AND (p.state IN ({marks})"
        f"   OR (p.state = 'dead' AND p.kind IN ({kind_marks}))))"
        " ORDER BY o.id LIMIT ?",
        (uplink, now, *blocking, *kinds, limit),
    ).fetchall()
    if not rows:
        return []
    if run > 1:
        rows = [r for head in rows for r in (head, *_followers(conn, head, run - 1, now))]
    conn.executemany(
        "UPDATE outbox SET state = 'inflight', attempts = attempts + 1, leased_at = ? WHERE id = ?",
        [(now, row[0]) for row in rows],
    )
    return [
        OutboxMessage(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6] + 1, r[7], r[8], r[9])
        for r in rows
    ]


def _followers(conn: sqlite3.Connection, head: Any, most: int, now: float) -> list[Any]:
    """The messages right after `head` in its key that may go out with it: pending and due, up
    to the first that is not, and before any in flight or dead (both through outbox_order)."""
    uplink, key = head[1], head[3]
    found = []
    for row in conn.execute(
        "SELECT id, uplink, kind, order_key, dedupe_key, payload, attempts, created_at, event_id,"
        " unreadable, next_attempt_at FROM outbox WHERE uplink = ? AND order_key = ?"
        " AND state = 'pending' AND id > ? ORDER BY id LIMIT ?",
        (uplink, key, head[0], most),
    ):
        if row[10] > now:
            break
        found.append(row[:10])
    if found:
        (stop,) = conn.execute(
            "SELECT MIN(id) FROM outbox WHERE uplink = ? AND order_key = ?"
            " AND state IN ('inflight', 'dead') AND id > ? AND id < ?",
            (uplink, key, head[0], found[-1][0]),
        ).fetchone()
        if stop is not None:  # an operator's retry reordered the key: leave the rest for later
            found = [r for r in found if r[0] < stop]
    return found


def next_due(conn: sqlite3.Connection, uplink: str) -> float | None:
    """Return the earliest next-attempt time of the uplink's pending messages, if any."""
    row = conn.execute(
        "SELECT MIN(next_attempt_at) FROM outbox WHERE uplink = ? AND state = 'pending'", (uplink,)
    ).fetchone()
    return row[0] if row else None


def mark_delivered(conn: sqlite3.Connection, message_id: int, response: str | None) -> None:
    """Settle a message as delivered, keeping the platform's answer."""
    conn.execute(
        "UPDATE outbox SET state = 'delivered', settled_at = ?, response = ?, last_error = NULL"
        " WHERE id = ? AND state = 'inflight'",
        (time.time(), response, message_id),
    )


def mark_retry(
    conn: sqlite3.Connection,
    message_id: int,
    error: str,
    not_before: float,
    response: str | None,
    *,
    unreadable: int = 0,
) -> None:
    """Put a message back in the queue to be tried again at `not_before`; `unreadable` is the
    count of unreadable answers in a row so far (kept across restarts)."""
    conn.execute(
        "UPDATE outbox SET state = 'pending', next_attempt_at = ?, last_error = ?,"
        " response = COALESCE(?, response), unreadable = ? WHERE id = ? AND state = 'inflight'",
        (not_before, error, response, unreadable, message_id),
    )


def mark_dead(conn: sqlite3.Connection, message_id: int, reason: str, response: str | None) -> None:
    """Make a message a dead letter, keeping the platform's reason and answer."""
    conn.execute(
        "UPDATE outbox SET state = 'dead', settled_at = ?, last_error = ?, response = ?"
        " WHERE id = ? AND state = 'inflight'",
        (time.time(), reason, response, message_id),
    )


def release(conn: sqlite3.Connection, message_ids: list[int]) -> None:
    """Return leased messages to the queue unsent (shutdown): the attempt is not counted."""
    conn.executemany(
        "UPDATE outbox SET state = 'pending', attempts = MAX(attempts - 1, 0)"
        " WHERE id = ? AND state = 'inflight'",
        [(i,) for i in message_ids],
    )


def recover_inflight(conn: sqlite3.Connection) -> int:
    """Return every lease a previous process left in flight to the queue; count them."""
    return conn.execute(
        "UPDATE outbox SET state = 'pending', next_attempt_at = MIN(next_attempt_at, ?)"
        " WHERE state = 'inflight'",
        (time.time(),),
    ).rowcount


def save_uplink_state(
    conn: sqlite3.Connection,
    uplink: str,
    *,
    breaker: str,
    consecutive_failures: int,
    last_error: str | None,
    success: bool | None,
) -> None:
    """Record an uplink's breaker state so `edge-agent status` can show it from another process."""
    now = time.time()
    conn.execute(
        "INSERT INTO uplink_state (uplink, breaker, consecutive_failures, last_error,"
        " last_success_at, last_failure_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (uplink) DO UPDATE SET breaker = excluded.breaker,"
        " consecutive_failures = excluded.consecutive_failures,"
        " last_error = COALESCE(excluded.last_error, uplink_state.last_error),"
        " last_success_at = COALESCE(excluded.last_success_at, uplink_state.last_success_at),"
        " last_failure_at = COALESCE(excluded.last_failure_at, uplink_state.last_failure_at),"
        " updated_at = excluded.updated_at",
        (
            uplink,
            breaker,
            consecutive_failures,
            last_error,
            now if success else None,
            now if success is False else None,
            now,
        ),
    )


# (uplink, state, count) without a full scan: each uplink found by one index probe (a loose scan
# of outbox_queue), each of its open states counted through that index (as many rows as its
# backlog), settled ones read from the counts triggers keep (schema v7: those would be years).
COUNTS_SQL = (
    "WITH RECURSIVE up(name) AS (SELECT MIN(uplink) FROM outbox UNION ALL"
    " SELECT (SELECT MIN(uplink) FROM outbox WHERE uplink > name) FROM up WHERE name IS NOT NULL),"
    " open(state) AS (VALUES ('pending'), ('inflight'), ('dead')),"
    " counted(uplink, state, n) AS (SELECT name, open.state, (SELECT COUNT(*) FROM outbox AS o"
    " WHERE o.uplink = name AND o.state = open.state) FROM up, open WHERE name IS NOT NULL)"
    " SELECT uplink, state, n FROM counted WHERE n > 0"
    " UNION ALL SELECT uplink, state, n FROM outbox_settled_counts WHERE n > 0"
)
# The oldest message of an (uplink, state) through the outbox_queue index: ids grow with time.
OLDEST_SQL = "SELECT created_at FROM outbox WHERE uplink = ? AND state = ? ORDER BY id LIMIT 1"


def tally(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Messages per uplink and state (only states that have any), without a full scan."""
    counts: dict[str, dict[str, int]] = {}
    for uplink, state, n in conn.execute(COUNTS_SQL):
        counts.setdefault(uplink, {})[state] = n
    return counts


def oldest_created(conn: sqlite3.Connection, uplink: str, state: str) -> float | None:
    """`created_at` of the uplink's oldest message in `state`; None when there is none."""
    row = conn.execute(OLDEST_SQL, (uplink, state)).fetchone()
    return None if row is None else float(row[0])


def latest(
    conn: sqlite3.Connection, uplinks: list[str], kind: str, order_key: str
) -> tuple[str, str | None] | None:
    """(state, the platform's answer) of the newest message of `kind` and `order_key` queued
    for one of `uplinks`; None if there is none."""
    marks = ", ".join("?" * len(uplinks))
    row = conn.execute(
        f"SELECT state, response FROM outbox WHERE uplink IN ({marks}) AND order_key = ?"
        " AND kind = ? ORDER BY id DESC LIMIT 1",
        (*uplinks, order_key, kind),
    ).fetchone()
    return None if row is None else (row[0], row[1])
