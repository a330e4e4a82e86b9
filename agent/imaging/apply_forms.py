"""基卫 apply forms (seed 003 §3.1) kept by the imaging domain: stored as looked up, queried by
the local API, and the source of an exam's applyNo when RIS posts none (pure SQL)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

ECG_CLASSES = frozenset({"ECG", "心电"})
COLUMNS = ("fkey", "medicarecode", "yyid00", "businesstype", "type", "applydate")


def save_forms(
    conn: sqlite3.Connection, forms: list[Mapping[str, Any]], at: str, event_id: str
) -> None:
    """Store (or refresh) each form by its applycode."""
    conn.executemany(
        "INSERT INTO im_apply_forms (applycode, fkey, medicarecode, yyid00, businesstype, type,"
        " applydate, form, received_at, event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (applycode) DO UPDATE SET fkey = excluded.fkey,"
        " medicarecode = excluded.medicarecode, yyid00 = excluded.yyid00,"
        " businesstype = excluded.businesstype, type = excluded.type,"
        " applydate = excluded.applydate, form = excluded.form,"
        " received_at = excluded.received_at, event_id = excluded.event_id",
        [
            (
                str(form["applycode"]),
                *(str(form.get(c) or "") or None for c in COLUMNS),
                json.dumps(dict(form), ensure_ascii=False, sort_keys=True),
                at,
                event_id,
            )
            for form in forms
            if form.get("applycode")
        ],
    )


def find_forms(
    conn: sqlite3.Connection, where: Mapping[str, str], limit: int = 100
) -> list[dict[str, Any]]:
    """Stored forms matching every given column (medicarecode, yyid00, businesstype, type,
    fkey), newest apply date first."""
    given = {k: v for k, v in where.items() if k in COLUMNS and v}
    clause = " AND ".join(f"{k} = ?" for k in given) or "1"
    rows = conn.execute(
        f"SELECT form FROM im_apply_forms WHERE {clause}"
        " ORDER BY applydate DESC, applycode DESC LIMIT ?",
        (*given.values(), limit),
    )
    return [json.loads(row[0]) for row in rows]


def apply_no_for(conn: sqlite3.Connection, document: Mapping[str, Any]) -> str | None:
    """The applycode of the newest stored form of this patient and kind (ECG or imaging) that
    no other exam uses yet; matched by HIS patient number, else card number."""
    patient = document.get("patientInfo") or {}
    info = document.get("examInfo") or {}
    kind = "1" if str(info.get("examClass") or "") in ECG_CLASSES else "2"
    for column, value in (("fkey", patient.get("sickId")), ("medicarecode", patient.get("cardNo"))):
        if not value:
            continue
        row = conn.execute(
            f"SELECT applycode FROM im_apply_forms WHERE {column} = ?"
            " AND COALESCE(type, ?) = ? AND applycode NOT IN"
            " (SELECT apply_no FROM im_exams WHERE apply_no != '' AND exam_no != ?)"
            " ORDER BY applydate DESC, applycode DESC LIMIT 1",
            (str(value), kind, kind, str(document.get("examNo") or "")),
        ).fetchone()
        if row is not None:
            return str(row[0])
    return None
