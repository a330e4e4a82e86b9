"""A cycle's verdict in the state tables: its violations and its compliance."""

from __future__ import annotations

import sqlite3

from agent.reprocessing.facts import Violation


def record_violation(
    conn: sqlite3.Connection, clean_id: str, violation: Violation, at: str, event_id: str | None
) -> bool:
    """Keep a violation of cycle `clean_id` once; an error makes the cycle non-compliant."""
    fresh = conn.execute(
        "INSERT OR IGNORE INTO rp_violations (clean_id, rule, clause, severity, message, at,"
        " event_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            clean_id,
            violation.rule,
            violation.clause,
            violation.severity,
            violation.message,
            at,
            event_id,
        ),
    ).rowcount
    if fresh and violation.severity == "error":
        conn.execute(
            "UPDATE rp_cycles SET compliance = 'non_compliant' WHERE clean_id = ?", (clean_id,)
        )
    return bool(fresh)


def verdict(conn: sqlite3.Connection, clean_id: str) -> str:
    """The cycle's compliance: pending, compliant, non_compliant or overridden."""
    row = conn.execute(
        "SELECT compliance FROM rp_cycles WHERE clean_id = ?", (clean_id,)
    ).fetchone()
    return str(row[0]) if row else "pending"


def error_messages(conn: sqlite3.Connection, clean_id: str) -> list[str]:
    """The cycle's recorded error violations, oldest first, for people."""
    return [
        str(row[0])
        for row in conn.execute(
            "SELECT message FROM rp_violations WHERE clean_id = ? AND severity = 'error'"
            " ORDER BY id",
            (clean_id,),
        )
    ]
