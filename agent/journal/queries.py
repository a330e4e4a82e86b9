"""Read and operator-write access to a journal another process may be running on (aiosqlite)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from agent.errors import JournalError
from agent.journal import outbox

MESSAGE_COLUMNS = (
    "id, uplink, kind, order_key, dedupe_key, state, attempts, created_at, next_attempt_at,"
    " leased_at, settled_at, last_error, event_id"
)


@dataclass(frozen=True, slots=True)
class UplinkStatus:
    """One uplink's queue as `edge-agent status` shows it."""

    uplink: str
    pending: int
    inflight: int
    dead: int
    delivered: int
    oldest_pending_age: float | None
    breaker: str
    last_error: str | None


@asynccontextmanager
async def connect(path: Path) -> AsyncIterator[aiosqlite.Connection]:
    """Open an existing journal (never create one) for reading and operator commands."""
    if not path.exists():  # noqa: ASYNC240 - one stat before connecting
        raise JournalError(f"{path}: no journal here (has the agent run with this config?)")
    try:
        db = await aiosqlite.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None)
    except aiosqlite.Error as err:
        raise JournalError(f"{path}: {err}") from err
    try:
        await db.execute("PRAGMA busy_timeout=10000")
        db.row_factory = aiosqlite.Row
        yield db
    finally:
        await db.close()


async def uplink_status(db: aiosqlite.Connection, configured: list[str]) -> list[UplinkStatus]:
    """Queue counts, oldest pending age, breaker and last error for each uplink."""
    counts: dict[str, dict[str, int]] = {name: {} for name in configured}
    async with db.execute(outbox.COUNTS_SQL) as cursor:
        async for uplink, state, n in cursor:
            counts.setdefault(uplink, {})[state] = n
    states: dict[str, tuple[str, str | None]] = {}
    async with db.execute("SELECT uplink, breaker, last_error FROM uplink_state") as cursor:
        async for uplink, breaker, last_error in cursor:
            states[uplink] = (breaker, last_error)
    now = time.time()
    result = []
    for uplink in sorted(counts):
        by_state = counts[uplink]
        firsts = [await _oldest(db, uplink, s) for s in ("pending", "inflight") if s in by_state]
        oldest = min((first for first in firsts if first is not None), default=None)
        breaker, last_error = states.get(uplink, ("closed", None))
        result.append(
            UplinkStatus(
                uplink=uplink,
                pending=by_state.get("pending", 0),
                inflight=by_state.get("inflight", 0),
                dead=by_state.get("dead", 0),
                delivered=by_state.get("delivered", 0),
                oldest_pending_age=None if oldest is None else max(now - oldest, 0.0),
                breaker=breaker,
                last_error=last_error,
            )
        )
    return result


async def _oldest(db: aiosqlite.Connection, uplink: str, state: str) -> float | None:
    async with db.execute(outbox.OLDEST_SQL, (uplink, state)) as cursor:
        row = await cursor.fetchone()
    return None if row is None else float(row[0])


async def open_alert_count(db: aiosqlite.Connection) -> int:
    """How many alerts nobody has acknowledged yet."""
    async with db.execute("SELECT COUNT(*) FROM alerts WHERE acknowledged_at IS NULL") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def list_messages(
    db: aiosqlite.Connection, *, uplink: str | None, state: str | None, limit: int
) -> list[dict[str, Any]]:
    """Newest-first messages, optionally of one uplink and state."""
    where, args = [], []
    if uplink:
        where.append("uplink = ?")
        args.append(uplink)
    if state:
        where.append("state = ?")
        args.append(state)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    async with db.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM outbox {clause} ORDER BY id DESC LIMIT ?",
        (*args, limit),
    ) as cursor:
        return [dict(row) async for row in cursor]


async def get_message(db: aiosqlite.Connection, message_id: int) -> dict[str, Any] | None:
    """One message with its payload and the platform's response."""
    async with db.execute(
        f"SELECT {MESSAGE_COLUMNS}, payload, response FROM outbox WHERE id = ?",
        (message_id,),
    ) as cursor:
        row = await cursor.fetchone()
    if row is None:
        return None
    message = dict(row)
    message["payload"] = json.loads(message["payload"])
    return message


async def retry(
    db: aiosqlite.Connection,
    message_ids: list[int],
    *,
    actor: str,
    payload: dict[str, Any] | None = None,
) -> list[int]:
    """Re-queue dead (or waiting) messages for immediate delivery, journaling who did it."""
    return await _operator_change(db, message_ids, actor, "retry", payload=payload)


async def discard(
    db: aiosqlite.Connection, message_ids: list[int], *, actor: str, reason: str
) -> list[int]:
    """Give up on dead or pending messages for good, journaling who did it and why."""
    return await _operator_change(db, message_ids, actor, "discard", reason=reason)


async def states(db: aiosqlite.Connection, message_ids: list[int]) -> dict[int, str]:
    """The state of each of `message_ids` that exists."""
    marks = ",".join("?" * len(message_ids))
    sql = f"SELECT id, state FROM outbox WHERE id IN ({marks})"
    async with db.execute(sql, message_ids) as cursor:
        return {row[0]: row[1] async for row in cursor}


async def dead_ids(db: aiosqlite.Connection, uplink: str | None) -> list[int]:
    """Ids of every dead letter, optionally of one uplink."""
    sql = "SELECT id FROM outbox WHERE state = 'dead'" + (" AND uplink = ?" if uplink else "")
    async with db.execute(sql, (uplink,) if uplink else ()) as cursor:
        return [row[0] async for row in cursor]


async def _operator_change(
    db: aiosqlite.Connection,
    message_ids: list[int],
    actor: str,
    action: str,
    *,
    payload: dict[str, Any] | None = None,
    reason: str | None = None,
) -> list[int]:
    now = time.time()
    changed = []
    await db.execute("BEGIN IMMEDIATE")
    try:
        for message_id in message_ids:
            if action == "retry":
                cursor = await db.execute(
                    "UPDATE outbox SET state = 'pending', next_attempt_at = ?, settled_at = NULL,"
                    " unreadable = 0, payload = COALESCE(?, payload)"
                    " WHERE id = ? AND state IN ('dead', 'pending')",
                    (now, None if payload is None else json.dumps(payload), message_id),
                )
            else:
                cursor = await db.execute(
                    "UPDATE outbox SET state = 'discarded', settled_at = ?"
                    " WHERE id = ? AND state IN ('dead', 'pending')",
                    (now, message_id),
                )
            if cursor.rowcount:
                changed.append(message_id)
                detail: dict[str, Any] = {"reason": reason} if reason else {}
                if payload is not None:
                    detail["payload_replaced"] = True
                await db.execute(
                    "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                    (now, actor, f"outbox.{action}", f"outbox:{message_id}", json.dumps(detail)),
                )
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    return changed
