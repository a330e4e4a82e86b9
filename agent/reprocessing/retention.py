"""The reprocessing records' retention (WS 507-2016 §7.6: 3 years): uses, cycles with their steps,
violations and washer runs, unlinked washer runs and quality tests older than the period, walked
in small batches by the journal's keeper. Whatever a lookback inside the period reaches stays:
the cycle before a kept use, each scope's current cycle, the latest quality test of a subject."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from agent.journal.retention import Purge, Walk


def _drop_cycle_records(conn: sqlite3.Connection, rowids: list[int]) -> None:
    """A cycle's steps, violations and washer runs, before the cycle itself goes."""
    marks = ", ".join("?" * len(rowids))
    cycles = [
        (clean_id,)
        for (clean_id,) in conn.execute(
            f"SELECT clean_id FROM rp_cycles WHERE rowid IN ({marks})", rowids
        )
    ]
    for table in ("rp_steps", "rp_violations", "washer_cycles"):
        conn.executemany(f"DELETE FROM {table} WHERE clean_id = ?", cycles)


# Still reached by a lookback: a scope's current cycle, or the cycle before a use still kept.
CYCLE_NEEDED = (
    "rp_cycles.clean_id IN (SELECT clean_id FROM rp_scopes WHERE clean_id IS NOT NULL)"
    " OR EXISTS (SELECT 1 FROM rp_uses u WHERE u.clean_id = rp_cycles.clean_id)"
)
# A run linked to a cycle goes with it; the latest test of a subject (and its latest pass) stays:
# "since its last good result" needs it however old.
RUN_LINKED = (
    "washer_cycles.clean_id IS NOT NULL AND EXISTS"
    " (SELECT 1 FROM rp_cycles c WHERE c.clean_id = washer_cycles.clean_id)"
)
LATEST_TEST = (
    "quality_tests.tested_at >= (SELECT MAX(q.tested_at) FROM quality_tests q"
    " WHERE q.kind = quality_tests.kind AND q.subject = quality_tests.subject)"
    " OR (quality_tests.passed AND quality_tests.tested_at >= (SELECT MAX(q.tested_at)"
    " FROM quality_tests q WHERE q.kind = quality_tests.kind"
    " AND q.subject = quality_tests.subject AND q.passed))"
)


def purges() -> dict[str, Callable[[], Purge]]:
    """Each record kind's purge for one pass, in the order they run (uses free their cycles)."""
    return {
        "reprocessing.uses": lambda: Walk("rp_uses", "used_at"),
        "reprocessing.cycles": lambda: Walk(
            "rp_cycles",
            "COALESCE(used_at, completed_at, opened_at)",
            keep=CYCLE_NEEDED,
            cascade=_drop_cycle_records,
        ),
        "reprocessing.washer_runs": lambda: Walk("washer_cycles", "ended_at", keep=RUN_LINKED),
        "reprocessing.quality_tests": lambda: Walk("quality_tests", "tested_at", keep=LATEST_TEST),
    }
