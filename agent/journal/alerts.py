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


def raise_alert(
    conn: sqlite3.Connection, alert: Alert, *, at: float | None = None
) -> list[str] | None:
    """Record `alert` once per (code, origin) as of `at` (when its cause happened; default now)
    and queue it for every alert route.

    Returns the uplinks it was queued for, or None if it had already been raised.
    """
    recorded = time.time()
    at = recorded if at is None else at
    cursor = conn.execute(
        "INSERT OR IGNORE INTO alerts (at, severity, code, subject, message, origin)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (at, alert.severity, alert.code, alert.subject, alert.message, alert.origin),
    )
    if not cursor.rowcount:
        return None
    alert_id = cursor.lastrowid
    snoozed = _snoozed(conn, alert, at)
    if snoozed is not None:  # recorded and published all the same; nobody is asked again
        conn.execute(
            "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ?, note = ? WHERE id = ?",
            (at, f"snoozed by {snoozed[0]}", snoozed[1], alert_id),
        )
    payload = json.dumps(
        {
            "id": alert_id,
            "at": datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds"),
            "severity": alert.severity,
            "code": alert.code,
            "subject": alert.subject,
            "message": alert.message,
            "origin": alert.origin,
            "snoozed": snoozed is not None,
            "recorded_at": datetime.fromtimestamp(recorded, UTC).isoformat(timespec="seconds"),
            "topic_suffix": alert.severity,
        },
        ensure_ascii=False,
    )
    routes = [row[0] for row in conn.execute("SELECT uplink FROM alert_routes ORDER BY uplink")]
    for uplink in routes:
        conn.execute(
            "INSERT OR IGNORE INTO outbox (uplink, kind, order_key, dedupe_key, payload,"
            " created_at, next_attempt_at) VALUES (?, 'alert', 'alerts', ?, ?, ?, ?)",
            (uplink, f"alert:{alert_id}", payload, recorded, recorded),
        )
    return routes


def _snoozed(conn: sqlite3.Connection, alert: Alert, at: float) -> tuple[str, str] | None:
    """(who, why) of a live snooze of `alert`'s code and subject; never for a critical one."""
    if alert.severity == "critical":
        return None
    row = conn.execute(
        "SELECT by, reason FROM alert_snoozes WHERE code = ? AND subject = ? AND until > ?"
        " ORDER BY until DESC LIMIT 1",
        (alert.code, alert.subject, at),
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def snooze(
    conn: sqlite3.Connection, alert_id: int, by: str, reason: str, at: float, *, hours: float
) -> int:
    """Snooze the code and subject of alert `alert_id` for `hours` and acknowledge its open
    occurrences; how many were acknowledged (0: unknown, or a critical alert, never snoozed)."""
    row = conn.execute(
        "SELECT code, subject, severity FROM alerts WHERE id = ?", (alert_id,)
    ).fetchone()
    if row is None or row[2] == "critical":
        return 0
    conn.execute(
        "INSERT INTO alert_snoozes (code, subject, until, by, reason, at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (row[0], row[1], at + hours * 3600, by, reason, at),
    )
    return acknowledge(conn, alert_id, f"snoozed by {by}", reason, at, group=True)


def set_routes(conn: sqlite3.Connection, uplinks: Iterable[str]) -> None:
    """Make `uplinks` the alert routes (the config's `[alerts] publish_to`)."""
    conn.execute("DELETE FROM alert_routes")
    conn.executemany("INSERT INTO alert_routes (uplink) VALUES (?)", [(u,) for u in uplinks])


def acknowledge(
    conn: sqlite3.Connection, alert_id: int, by: str, note: str, at: float, *, group: bool = False
) -> int:
    """Mark an open alert acknowledged by a named person (with `group`, also every earlier open
    one of the same code and subject); how many were, 0 if unknown or already done."""
    same = (
        " OR (code, subject) = (SELECT code, subject FROM alerts WHERE id = :id) AND id < :id"
        if group
        else ""
    )
    return conn.execute(
        "UPDATE alerts SET acknowledged_at = :at, acknowledged_by = :by, note = :note"
        f" WHERE acknowledged_at IS NULL AND (id = :id{same})",
        {"at": at, "by": by, "note": note, "id": alert_id},
    ).rowcount


def alert_severity(conn: sqlite3.Connection, alert_id: int) -> str | None:
    """The alert's severity, or None when there is no such alert."""
    row = conn.execute("SELECT severity FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    return None if row is None else str(row[0])


def open_among(conn: sqlite3.Connection, alert_ids: Iterable[int]) -> list[int]:
    """Which of `alert_ids` are open alerts."""
    ids = list(alert_ids)
    marks = ",".join("?" * len(ids))
    sql = f"SELECT id FROM alerts WHERE acknowledged_at IS NULL AND id IN ({marks}) ORDER BY id"
    return [row[0] for row in conn.execute(sql, ids)]


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


# Critical first: a critical alert stays on top (pinned) until acknowledged.
_RANK = "CASE severity WHEN 'critical' THEN 0 WHEN 'error' THEN 1 ELSE 2 END"
SEVERITIES: tuple[Severity, ...] = ("critical", "error", "warning")


def open_alert_groups(conn: sqlite3.Connection, limit: int = 200) -> list[dict[str, object]]:
    """Open alerts grouped by code and subject (the same condition raised again): how many,
    first and last seen, the latest one's id and message; critical groups first, then newest."""
    cursor = conn.execute(
        "SELECT g.latest AS id, g.code, g.subject, g.count, g.first_at, g.last_at, g.rank,"
        " a.message FROM (SELECT code, subject, COUNT(*) AS count, MIN(at) AS first_at,"
        f" MAX(at) AS last_at, MAX(id) AS latest, MIN({_RANK}) AS rank FROM alerts"
        " WHERE acknowledged_at IS NULL GROUP BY code, subject) AS g"
        " JOIN alerts AS a ON a.id = g.latest ORDER BY g.rank, g.last_at DESC LIMIT ?",
        (limit,),
    )
    columns = [c[0] for c in cursor.description]
    groups = [dict(zip(columns, row, strict=True)) for row in cursor]
    for group in groups:
        group["severity"] = SEVERITIES[int(str(group.pop("rank")))]
    return groups


class Acknowledgements:
    """Applies `alert.acknowledge` and `alert.snooze` events (who, why) to the alerts table."""

    name = "alerts"
    kinds = ("alert.acknowledge", "alert.snooze")

    def handle(self, tx: _HasConn, event: Event) -> None:
        """Acknowledge (or snooze) the alert the event names; an unknown one is left alone."""
        payload = event.payload
        if event.kind == "alert.snooze":
            snooze(
                tx.conn,
                int(payload["alert_id"]),
                str(payload["by"]),
                str(payload["reason"]),
                event.occurred_at.timestamp(),
                hours=float(payload["hours"]),
            )
            return
        # One alert (`alert_id`), or several chosen at once (`alert_ids`).
        for alert_id in payload.get("alert_ids") or [payload["alert_id"]]:
            acknowledge(
                tx.conn,
                int(alert_id),
                str(payload["by"]),
                str(payload.get("note", "")),
                event.occurred_at.timestamp(),
                group=bool(payload.get("group", False)),
            )
