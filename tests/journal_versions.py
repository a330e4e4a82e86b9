"""A journal left at an older schema version, as an agent of that version made it."""

from __future__ import annotations

import sqlite3

from agent.journal.database import migrations, split_statements


def migrate_until(conn: sqlite3.Connection, below: int) -> None:
    """Apply every migration older than `below` (the journal an older agent left)."""
    for version, sql in migrations():
        if version >= below:
            break
        for statement in split_statements(sql):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={version}")
