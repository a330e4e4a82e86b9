"""The report store: each exam as posted, its neutral record, states and times (pure SQL)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast, get_args

from agent.imaging.exam_record import exam_record
from agent.vocabulary.exams import ExamQueries, ExamRecord, ReportFile, TimeField
from agent.vocabulary.spool import journal_state_dir, spool_file, stored_path

_READ = "payload, record, accession, study_uid, modified_at"  # what _record is made of
TIME_FIELDS: tuple[TimeField, ...] = get_args(TimeField)


@dataclass(frozen=True, slots=True)
class Saved:
    """An exam as stored: its record (with its joins), and whether its report changed."""

    record: ExamRecord
    study_uid: str | None
    report_changed: bool
    report_digest: str


def save_exam(
    conn: sqlite3.Connection,
    document: Mapping[str, Any],
    *,
    accession: str,
    study_uid: str | None,
    received: datetime,
    event_id: str,
    updated_at: str,
) -> Saved:
    """Store or replace an exam, joined to a study when one is known."""
    record = exam_record(document)
    report = record.get("report") or {}
    digest = _digest({"report": report, "status": record.get("status")})
    exam_no = record["exam_no"]
    old = conn.execute(
        "SELECT report_digest, modified_at FROM im_exams WHERE exam_no = ?", (exam_no,)
    ).fetchone()
    changed = bool(report) and (old is None or old[0] != digest)
    if not report:
        modified = None
    elif not changed and old[1]:
        modified = old[1]
    else:  # a new report, or its content or the exam's status changed: now, the local time
        modified = received.replace(microsecond=0, tzinfo=None).isoformat()
    items = record.get("order", {}).get("items", [])
    refunds = [item["refunded_at"] for item in items if "refunded_at" in item]
    info: Mapping[str, Any] = document.get("examInfo") or {}
    conn.execute(
        "INSERT INTO im_exams (exam_no, apply_no, accession, study_uid, exam_status, exam_class,"
        " exam_date, payload, updated_at, event_id, record, patient_id, exam_at, registered_at,"
        " written_at, audited_at, refunded_at, cancelled_at, modified_at, report_digest,"
        " hospital_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (exam_no) DO UPDATE SET apply_no = excluded.apply_no,"
        " accession = COALESCE(NULLIF(excluded.accession, ''), accession),"
        " study_uid = COALESCE(excluded.study_uid, study_uid),"
        " exam_status = excluded.exam_status, exam_class = excluded.exam_class,"
        " exam_date = excluded.exam_date, payload = excluded.payload,"
        " updated_at = excluded.updated_at, event_id = excluded.event_id,"
        " record = excluded.record, patient_id = excluded.patient_id,"
        " exam_at = excluded.exam_at, registered_at = excluded.registered_at,"
        " written_at = excluded.written_at, audited_at = excluded.audited_at,"
        " refunded_at = excluded.refunded_at, cancelled_at = excluded.cancelled_at,"
        " modified_at = excluded.modified_at, report_digest = excluded.report_digest,"
        " hospital_code = excluded.hospital_code",
        (
            exam_no,
            str(info.get("applyNo") or ""),
            accession,
            study_uid,
            str(info["examStatus"]),
            str(info.get("examClass") or ""),
            str(info.get("examTime") or "")[:10],
            json.dumps(document, ensure_ascii=False, sort_keys=True),
            updated_at,
            event_id,
            json.dumps(record, ensure_ascii=False, sort_keys=True),
            record.get("patient", {}).get("id"),
            record.get("exam_at"),
            record.get("registered_at"),
            report.get("written_at"),
            report.get("audited_at"),
            max(refunds, default=None),
            record.get("cancelled_at"),
            modified,
            digest if report else None,
            record.get("hospital_code") or None,
        ),
    )
    joined, stored_accession = conn.execute(
        "SELECT study_uid, accession FROM im_exams WHERE exam_no = ?", (exam_no,)
    ).fetchone()
    made = _joined(record, stored_accession, joined)
    return Saved(made, joined, changed, digest)


def study_exams(
    conn: sqlite3.Connection, study_uid: str
) -> list[tuple[str, dict[str, Any], ExamRecord]]:
    """(exam_no, document as posted, neutral record) of each exam joined to a study; the record
    as stored, without what reading adds (files, modified_at): what a push carries."""
    rows = conn.execute(
        "SELECT exam_no, payload, record, accession FROM im_exams WHERE study_uid = ?"
        " ORDER BY exam_no",
        (study_uid,),
    ).fetchall()
    return [
        (no, json.loads(doc), _joined(_stored(doc, rec), accession, study_uid))
        for no, doc, rec, accession in rows
    ]


def exams_between(
    conn: sqlite3.Connection, field: TimeField, start: str, end: str, limit: int
) -> list[ExamRecord]:
    """Exams whose `field` lies in [start, end] (local ISO times, both inclusive), oldest first."""
    if field not in TIME_FIELDS:
        raise ValueError(f"{field!r} is not a time of the report store")
    rows = conn.execute(
        f"SELECT {_READ} FROM im_exams"
        f" WHERE {field} BETWEEN ? AND ? ORDER BY {field}, exam_no LIMIT ?",
        (start, end, limit),
    ).fetchall()
    return [_record(conn, row) for row in rows]


def exam_by_number(conn: sqlite3.Connection, number: str) -> ExamRecord | None:
    """The exam with this exam number, else the latest with this accession number."""
    row = conn.execute(
        f"SELECT {_READ} FROM im_exams WHERE exam_no = ? UNION ALL SELECT * FROM"
        f" (SELECT {_READ} FROM im_exams WHERE accession = ? ORDER BY updated_at DESC LIMIT 1)"
        " LIMIT 1",
        (number, number),
    ).fetchone()
    return None if row is None else _record(conn, row)


def attach_files(
    conn: sqlite3.Connection, exam_no: str, files: list[dict[str, Any]], at: str, event_id: str
) -> None:
    """Record files stored for an exam (the same file again keeps its first record); a path in
    the state directory is kept relative to it (`exam-files/<name>`): a moved one still has it."""
    state = journal_state_dir(conn)
    conn.executemany(
        "INSERT OR IGNORE INTO im_exam_files (exam_no, name, kind, size, attached_at, event_id,"
        " path) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                exam_no,
                f["name"],
                f["kind"],
                int(f["size"]),
                at,
                event_id,
                stored_path(str(f["path"]), state) if f.get("path") else None,
            )
            for f in files
        ],
    )


def report_images(conn: sqlite3.Connection, exam_no: str) -> list[tuple[str, str]]:
    """(name, path) of the exam's report images (JPEG, PNG, BMP) stored with a known path: the
    file where it is now (below the journal's state directory when stored relative to it)."""
    state = journal_state_dir(conn)
    return [
        (name, spool_file(path, state))
        for name, path in conn.execute(
            "SELECT name, path FROM im_exam_files WHERE exam_no = ? AND kind = 'report_image'"
            " AND path IS NOT NULL ORDER BY rowid",
            (exam_no,),
        )
    ]


def exam_files(conn: sqlite3.Connection, exam_no: str) -> list[ReportFile]:
    """The files attached to an exam, in the order they came."""
    cursor = conn.execute(
        "SELECT name, kind, size, attached_at FROM im_exam_files WHERE exam_no = ? ORDER BY rowid",
        (exam_no,),
    )
    return [
        ReportFile(name=name, kind=kind, size=size, attached_at=at)
        for name, kind, size, at in cursor
    ]


def _record(conn: sqlite3.Connection, row: tuple[Any, ...]) -> ExamRecord:
    """The stored record of a `_READ` row (made from the document for exams stored before v10),
    with the joins the index found since, when its report last changed and the files attached."""
    document, record, accession, study_uid, modified_at = row
    made = _joined(_stored(document, record), accession, study_uid)
    if modified_at:
        made["modified_at"] = modified_at
    files = exam_files(conn, made["exam_no"])
    if files:
        made["files"] = files
    return made


def _stored(document: str, record: str | None) -> dict[str, Any]:
    """The record as stored; made from the document for exams stored before v10."""
    return dict(json.loads(record)) if record else dict(exam_record(json.loads(document)))


def _joined(record: Mapping[str, Any], accession: str | None, study_uid: str | None) -> ExamRecord:
    """The record with the accession and study the index joined it to."""
    made = dict(record)
    if accession:
        made["accession"] = accession
    if study_uid:
        made["study_uid"] = study_uid
    return cast(ExamRecord, made)


def _digest(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


QUERIES = ExamQueries(between=exams_between, by_number=exam_by_number)
