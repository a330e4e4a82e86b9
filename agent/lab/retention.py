"""The lab records' retention, walked in small batches by the journal's keeper: reports (with
their PDFs' rows, and the agent's copies no record names any more) and the other lab records
last updated before the record period; never one an open message still carries."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from agent.journal.retention import FileWalk, Purge, Walk

OPEN = "('pending', 'inflight', 'dead')"
FILES_DIR = "exam-files/"  # where the local API stores the PDFs, relative to the state directory
REPORT_OPEN = (
    f"EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = lab_reports.event_id AND o.state IN {OPEN})"
    " OR EXISTS (SELECT 1 FROM lab_files f JOIN outbox o ON o.event_id = f.event_id"
    f" WHERE f.report_no = lab_reports.report_no AND o.state IN {OPEN})"
    " OR 'lab:' || lab_reports.report_no IN"
    f" (SELECT order_key FROM outbox WHERE state IN {OPEN})"
)
RECORD_OPEN = (
    f"EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = lab_records.event_id AND o.state IN {OPEN})"
    " OR lab_records.kind || ':' || lab_records.record_id IN"
    f" (SELECT order_key FROM outbox WHERE state IN {OPEN})"
)


def drop_report_files(conn: sqlite3.Connection, rowids: list[int]) -> list[str]:
    """The PDFs' rows of the reports about to go; the agent's copies nothing names any more
    (files are stored by their digest: an exam may share one)."""
    marks = ", ".join("?" * len(rowids))
    reports = [
        (no,)
        for (no,) in conn.execute(
            f"SELECT report_no FROM lab_reports WHERE rowid IN ({marks})", rowids
        )
    ]
    names = {
        name
        for (no,) in reports
        for (name,) in conn.execute("SELECT name FROM lab_files WHERE report_no = ?", (no,))
    }
    conn.executemany("DELETE FROM lab_files WHERE report_no = ?", reports)
    return [
        FILES_DIR + name
        for name in sorted(names)
        if not conn.execute(
            "SELECT 1 FROM lab_files WHERE name = ?"
            " UNION ALL SELECT 1 FROM im_exam_files WHERE name = ? LIMIT 1",
            (name, name),
        ).fetchone()
    ]


def purges() -> dict[str, Callable[[], Purge]]:
    """Each lab record kind's purge for one pass."""
    return {
        "lab.reports": lambda: FileWalk(
            "lab_reports", "updated_at", REPORT_OPEN, drop_report_files
        ),
        "lab.records": lambda: Walk("lab_records", "updated_at", keep=RECORD_OPEN),
    }
