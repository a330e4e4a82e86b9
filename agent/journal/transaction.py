"""What a domain handler is and what it may touch inside the ingest commit."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any, Protocol

from agent.events import Event
from agent.journal.alerts import Alert, raise_alert
from agent.journal.publish import Subject, publish

# One encoder for every row: `json.dumps` with options builds a new encoder on each call. NaN and
# Infinity are refused: written as JSON they are invalid, and no platform could read them.
to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


class Handler(Protocol):
    """A domain handler: pure and synchronous, it reads and writes state only through `tx`.

    It must be deterministic: if anything in its batch fails, the batch's writes are rolled back
    and `handle` runs again for the same event.
    """

    @property
    def name(self) -> str:
        """Names the handler in failure records and logs."""
        ...

    @property
    def kinds(self) -> tuple[str, ...]:
        """fnmatch patterns of the event kinds it handles."""
        ...

    def handle(self, tx: Transaction, event: Event) -> None: ...


class Transaction:
    """What a handler may touch: the open connection and the outbox, inside the ingest commit."""

    __slots__ = ("_touched", "at", "conn", "event_id", "now")

    def __init__(
        self,
        conn: sqlite3.Connection,
        event_id: str | None,
        touched: set[str],
        occurred_at: float | None = None,
    ) -> None:
        self.conn = conn
        self.event_id = event_id
        self.now = time.time()  # when messages are queued (and first due)
        # When what they report happened: the event's device clock, else now. Alerts and
        # published messages carry it, not the commit time (a backlog replayed hours later
        # still says when the scope was used).
        self.at = self.now if occurred_at is None else occurred_at
        self._touched = touched

    def enqueue(
        self,
        *,
        uplink: str,
        kind: str,
        order_key: str,
        dedupe_key: str,
        payload: dict[str, Any],
        delay: float = 0.0,
    ) -> bool:
        """Add an outbox message; False if (uplink, dedupe_key) was already queued."""
        cursor = self.conn.execute(
            "INSERT OR IGNORE INTO outbox (uplink, kind, order_key, dedupe_key, payload, event_id,"
            " created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                uplink,
                kind,
                order_key,
                dedupe_key,
                to_json(payload),
                self.event_id,
                self.now,
                self.now + delay,
            ),
        )
        if cursor.rowcount:
            self._touched.add(uplink)
            return True
        return False

    def publish(self, subject: Subject, key: str, payload: dict[str, Any]) -> None:
        """Queue a status message (scope state, health) for the uplinks following `subject`."""
        dedupe = f"{subject}:{key}:{self.event_id}"
        stamped = {"at": _iso(self.at), **payload}
        self._touched.update(
            publish(
                self.conn, subject, key=key, dedupe=dedupe, payload=stamped, event_id=self.event_id
            )
        )

    def raise_alert(self, alert: Alert) -> bool:
        """Record `alert` once per (code, origin) and queue it for the alert routes."""
        routes = raise_alert(self.conn, alert, at=self.at)
        if routes is None:
            return False
        self._touched.update(routes)
        return True


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
