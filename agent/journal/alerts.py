"""Alerts: raised in a journal transaction, routed to alert uplinks, listed until acknowledged."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from agent.events import Event

Severity = Literal["critical", "error", "warning"]


class _HasConn(Protocol):
    conn: sqlite3.Connection


@dataclass(frozen=True, slots=True)
class Alert:
    """Something a person must see: a compliance event or an operational failure."""

    code: str
    subject: str
    message: str
    origin: str
    severity: Severity = "critical"


def raise_alert(conn: sqlite3.Connection, alert: Alert) -> list[str] | None:
    """Record `alert` once per (code, origin) and queue it for every alert route.

    Returns the uplinks it was queued for, or None if it had already been raised.
    """
    at = time.time()
    cursor = conn.execute(
        "INSERT OR IGNORE INTO alerts (at, severity, code, subject, message, origin)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (at, alert.severity, alert.code, alert.subject, alert.message, alert.origin),
    )
    if not cursor.rowcount:
        return None
    alert_id = cursor.lastrowid
    payload = json.dumps(
        {
            "id": alert_id,
            "at": datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds"),
            "severity": alert.severity,
            "code": alert.code,
            "subject": alert.subject,
            "message": alert.message,
            "origin": alert.origin,
            "topic_suffix": alert.severity,
        },
        ensure_ascii=False,
    )
    routes = [row[0] for row in conn.execute("SELECT uplink FROM alert_routes ORDER BY uplink")]
    for uplink in routes:
        conn.execute(
            "INSERT OR IGNORE INTO outbox (uplink, kind, order_key, dedupe_key, payload,"
            " created_at, next_attempt_at) VALUES (?, 'alert', 'alerts', ?, ?, ?, ?)",
            (uplink, f"alert:{alert_id}", payload, at, at),
        )
    return routes


def set_routes(conn: sqlite3.Connection, uplinks: Iterable[str]) -> None:
    """Make `uplinks` the alert routes (the config's `[alerts] publish_to`)."""
    conn.execute("DELETE FROM alert_routes")
    conn.executemany("INSERT INTO alert_routes (uplink) VALUES (?)", [(u,) for u in uplinks])


def acknowledge(conn: sqlite3.Connection, alert_id: int, by: str, note: str, at: float) -> bool:
    """Mark an open alert acknowledged by a named person; False if unknown or already done."""
    return bool(
        conn.execute(
            "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ?, note = ?"
            " WHERE id = ? AND acknowledged_at IS NULL",
            (at, by, note, alert_id),
        ).rowcount
    )


def alert_state(conn: sqlite3.Connection, alert_id: int) -> str | None:
    """ "open", "acknowledged", or None when there is no such alert."""
    row = conn.execute("SELECT acknowledged_at FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    if row is None:
        return None
    return "open" if row[0] is None else "acknowledged"


def open_alerts(conn: sqlite3.Connection, limit: int = 500) -> list[dict[str, object]]:
    """Alerts nobody has acknowledged yet, newest first."""
    cursor = conn.execute(
        "SELECT id, at, severity, code, subject, message, origin FROM alerts"
        " WHERE acknowledged_at IS NULL ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    columns = [c[0] for c in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor]


class Acknowledgements:
    """Applies `alert.acknowledge` events (who, why) to the alerts table."""

    name = "alerts"
    kinds = ("alert.acknowledge",)

    def handle(self, tx: _HasConn, event: Event) -> None:
        """Acknowledge the alert the event names; an unknown or closed one is left alone."""
        payload = event.payload
        acknowledge(
            tx.conn,
            int(payload["alert_id"]),
            str(payload["by"]),
            str(payload.get("note", "")),
            event.occurred_at.timestamp(),
        )
