"""The results-sharing uplink's own rows in the journal's retention: cached query answers once
expired (a query deletes them too, but only when one is asked), and the daily reconciliation's
rows once the messages they counted are gone (`[journal] retention_days`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from agent.journal.retention import Purge, Walk


def expired_answers(conn: sqlite3.Connection, before: float, limit: int) -> tuple[int, bool]:
    """Cached answers that expired before `before` (kept 0 days: the cut-off is now)."""
    deleted = conn.execute(
        "DELETE FROM rs_query_cache WHERE rowid IN (SELECT rowid FROM rs_query_cache"
        " WHERE expires_at <= ? LIMIT ?)",
        (before, limit),
    ).rowcount
    return deleted, deleted == limit


def purges(days: float) -> dict[str, tuple[float, Callable[[], Purge]]]:
    """(days kept, a pass's purge) of each kind, the daily rows kept `days`."""
    return {
        "results_sharing.query_cache": (0.0, lambda: expired_answers),
        "results_sharing.daily": (days, lambda: Walk("rs_daily", "updated_at")),
    }
