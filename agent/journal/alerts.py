"""Alerts: raised inside a journal transaction, listed for people until acknowledged."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Literal

Severity = Literal["critical", "error", "warning"]


@dataclass(frozen=True, slots=True)
class Alert:
    """Something a person must see: a compliance event or an operational failure."""

    code: str
    subject: str
    message: str
    origin: str
    severity: Severity = "critical"


def raise_alert(conn: sqlite3.Connection, alert: Alert) -> bool:
    """Record `alert` once per (code, origin); False if it was already raised."""
    return bool(
        conn.execute(
            "INSERT OR IGNORE INTO alerts (at, severity, code, subject, message, origin)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), alert.severity, alert.code, alert.subject, alert.message, alert.origin),
        ).rowcount
    )


def open_alerts(conn: sqlite3.Connection, limit: int = 500) -> list[dict[str, object]]:
    """Alerts nobody has acknowledged yet, newest first."""
    cursor = conn.execute(
        "SELECT id, at, severity, code, subject, message, origin FROM alerts"
        " WHERE acknowledged_at IS NULL ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    columns = [c[0] for c in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor]
