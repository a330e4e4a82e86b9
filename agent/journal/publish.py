"""Status messages (scope state, agent health) queued for the uplinks that follow them."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

Subject = Literal["scope.state", "health"]


def set_publish_routes(conn: sqlite3.Connection, routes: Mapping[Subject, Iterable[str]]) -> None:
    """Make `routes` (subject → uplinks) the publish routes (the config's `[status]`)."""
    conn.execute("DELETE FROM publish_routes")
    conn.executemany(
        "INSERT INTO publish_routes (subject, uplink) VALUES (?, ?)",
        [(subject, uplink) for subject, uplinks in routes.items() for uplink in uplinks],
    )


def publish(
    conn: sqlite3.Connection,
    subject: Subject,
    *,
    key: str,
    dedupe: str,
    payload: dict[str, Any],
    event_id: str | None = None,
) -> list[str]:
    """Queue `payload` for every uplink following `subject`; returns those uplinks."""
    uplinks = [
        row[0]
        for row in conn.execute(
            "SELECT uplink FROM publish_routes WHERE subject = ? ORDER BY uplink", (subject,)
        )
    ]
    now = time.time()
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    for uplink in uplinks:
        conn.execute(
            "INSERT OR IGNORE INTO outbox (uplink, kind, order_key, dedupe_key, payload, event_id,"
            " created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (uplink, subject, f"{subject}:{key}", dedupe, body, event_id, now, now),
        )
    return uplinks
