"""Read models of the study index for people: the API and the dashboard."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from agent.imaging.forwarding import INSTANCE, PUSH, order_key
from agent.imaging.index import study_summary

_COLUMNS = (
    "study_uid, patient_id, accession, study_date, study_time, description, modalities,"
    " instance_count, first_received, last_received, state, stable_at, generation"
)


def recent_studies(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    """The `limit` studies that received an instance last, newest first, with their status."""
    # One ordered index scan per state (im_studies_due), instead of sorting the whole table.
    cursor = conn.execute(
        f"SELECT * FROM (SELECT {_COLUMNS} FROM im_studies WHERE state = 'receiving'"
        " ORDER BY last_received DESC LIMIT :n) UNION ALL"
        f" SELECT * FROM (SELECT {_COLUMNS} FROM im_studies WHERE state = 'stable'"
        " ORDER BY last_received DESC LIMIT :n) ORDER BY last_received DESC LIMIT :n",
        {"n": limit},
    )
    names = [c[0] for c in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    uplinks = _uplinks(conn)
    return [_status(conn, row, uplinks) for row in rows]


def study_detail(conn: sqlite3.Connection, study_uid: str) -> dict[str, Any] | None:
    """One study: its index rows, series, exams (as posted) and deliveries; None if unknown."""
    cursor = conn.execute(f"SELECT {_COLUMNS} FROM im_studies WHERE study_uid = ?", (study_uid,))
    row = cursor.fetchone()
    summary = study_summary(conn, study_uid)
    if row is None or summary is None:
        return None
    names = [c[0] for c in cursor.description]
    detail = _status(conn, dict(zip(names, row, strict=True)), _uplinks(conn))
    detail["patient"] = {k: summary[f"patient_{k}"] for k in ("id", "name", "sex", "birth_date")}
    detail["series"] = summary["series"]
    detail["exam_documents"] = [
        json.loads(payload)
        for (payload,) in conn.execute(
            "SELECT payload FROM im_exams WHERE study_uid = ? ORDER BY exam_no", (study_uid,)
        )
    ]
    return detail


def _status(conn: sqlite3.Connection, row: dict[str, Any], uplinks: list[str]) -> dict[str, Any]:
    uid = row["study_uid"]
    row["modalities"] = [m for m in (row["modalities"] or "").split("\\") if m]
    row["exams"] = [
        {"exam_no": no, "exam_status": status, "exam_class": cls, "exam_date": day}
        for no, status, cls, day in conn.execute(
            "SELECT exam_no, exam_status, exam_class, exam_date FROM im_exams"
            " WHERE study_uid = ? ORDER BY exam_no",
            (uid,),
        )
    ]
    row["delivery"] = _delivery(conn, uid, uplinks)
    return row


def _uplinks(conn: sqlite3.Connection) -> list[str]:
    """Every uplink with outbox rows, by a skip-scan of the outbox index (few uplinks)."""
    return [
        name
        for (name,) in conn.execute(
            "WITH RECURSIVE u(name) AS (SELECT MIN(uplink) FROM outbox UNION ALL"
            " SELECT (SELECT MIN(uplink) FROM outbox WHERE uplink > u.name) FROM u"
            " WHERE u.name IS NOT NULL) SELECT name FROM u WHERE name IS NOT NULL"
        )
    ]


def _delivery(
    conn: sqlite3.Connection, study_uid: str, uplinks: list[str]
) -> dict[str, dict[str, dict[str, int]]]:
    """Per uplink and kind: pending (incl. in flight), delivered and dead messages."""
    found: dict[str, dict[str, dict[str, int]]] = {}
    for uplink in uplinks:
        counts = conn.execute(
            "SELECT kind, state, COUNT(*) FROM outbox WHERE uplink = ? AND order_key = ?"
            " AND kind IN (?, ?) GROUP BY kind, state",
            (uplink, order_key(study_uid), PUSH, INSTANCE),
        ).fetchall()
        if not counts:
            continue
        kinds = {k: {"pending": 0, "delivered": 0, "dead": 0} for k in (PUSH, INSTANCE)}
        for kind, state, count in counts:
            bucket = "pending" if state == "inflight" else state
            if bucket in kinds[kind]:
                kinds[kind][bucket] += count
        found[uplink] = kinds
    return found
