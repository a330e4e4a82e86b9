"""The imaging index's retention, walked in small batches by the journal's keeper: an image's
index row some time after its file was purged (with its series, study and patient once empty),
exams with their report files, apply forms and statistics days after the record period. Nothing
an open (pending, in-flight or dead) message still names goes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from agent.imaging.index import refresh_modalities
from agent.journal.retention import FileWalk, Purge, Walk, iso

OPEN = "('pending', 'inflight', 'dead')"
FILES_DIR = "exam-files/"  # the agent's own copies, relative to the state directory
# An exam an open message still carries: produced by its event or one of its files' events, or
# queued under its order key (a report, its files) or its study's (its pushes, its images).
EXAM_OPEN = (
    f"EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = im_exams.event_id AND o.state IN {OPEN})"
    " OR EXISTS (SELECT 1 FROM im_exam_files f JOIN outbox o ON o.event_id = f.event_id"
    f" WHERE f.exam_no = im_exams.exam_no AND o.state IN {OPEN})"
    " OR 'exam:' || im_exams.exam_no IN"
    f" (SELECT order_key FROM outbox WHERE state IN {OPEN})"
    " OR (im_exams.study_uid IS NOT NULL AND 'study:' || im_exams.study_uid IN"
    f" (SELECT order_key FROM outbox WHERE state IN {OPEN}))"
)


def purged_instances(conn: sqlite3.Connection, before: float, limit: int) -> tuple[int, bool]:
    """Index rows of images whose file was purged before `before`, with their forwarding marks;
    the series, studies and patients left empty go with them."""
    rows = conn.execute(
        "SELECT sop_uid, study_uid FROM im_instances"
        " WHERE purged_at IS NOT NULL AND purged_at < ? ORDER BY purged_at LIMIT ?",
        (iso(before), limit),
    ).fetchall()
    if not rows:
        return 0, False
    sops = [(sop,) for sop, _ in rows]
    conn.executemany("DELETE FROM im_forwarded WHERE sop_uid = ?", sops)
    conn.executemany("DELETE FROM im_instances WHERE sop_uid = ?", sops)
    for study in sorted({study for _, study in rows}):
        _tidy(conn, study)
    return len(rows), len(rows) == limit


def _tidy(conn: sqlite3.Connection, study_uid: str) -> None:
    """A study's emptied series removed, then the study and its patient if nothing is left."""
    conn.execute(
        "DELETE FROM im_series WHERE study_uid = ? AND NOT EXISTS"
        " (SELECT 1 FROM im_instances i WHERE i.series_uid = im_series.series_uid)",
        (study_uid,),
    )
    (count,) = conn.execute(
        "SELECT count(*) FROM im_instances WHERE study_uid = ?", (study_uid,)
    ).fetchone()
    if count:
        conn.execute(
            "UPDATE im_studies SET instance_count = ? WHERE study_uid = ?", (count, study_uid)
        )
        refresh_modalities(conn, study_uid)
        return
    # Images PACS deleted keep their study's patient known while their rows stay.
    patient = conn.execute(
        "SELECT patient_id FROM im_studies WHERE study_uid = ?", (study_uid,)
    ).fetchone()
    conn.execute("DELETE FROM im_studies WHERE study_uid = ?", (study_uid,))
    if patient is not None:
        conn.execute(
            "DELETE FROM im_patients WHERE patient_id = ? AND NOT EXISTS"
            " (SELECT 1 FROM im_studies s WHERE s.patient_id = im_patients.patient_id)",
            patient,
        )


def drop_exam_files(conn: sqlite3.Connection, rowids: list[int]) -> list[str]:
    """The files' rows of the exams about to go; the agent's copies nothing names any more."""
    marks = ", ".join("?" * len(rowids))
    exams = [
        no
        for (no,) in conn.execute(f"SELECT exam_no FROM im_exams WHERE rowid IN ({marks})", rowids)
    ]
    named = ", ".join("?" * len(exams))
    files = conn.execute(
        f"SELECT name, path FROM im_exam_files WHERE exam_no IN ({named})", exams
    ).fetchall()
    conn.executemany("DELETE FROM im_exam_files WHERE exam_no = ?", [(no,) for no in exams])
    return [path for name, path in files if _orphan(conn, name, path)]


def _orphan(conn: sqlite3.Connection, name: str, path: str | None) -> bool:
    """Whether `path` is the agent's copy and no exam or lab report names its content any more
    (files are stored by their digest: two records may share one)."""
    if not path or not path.startswith(FILES_DIR):
        return False
    return not conn.execute(
        "SELECT 1 FROM im_exam_files WHERE name = ? OR path = ?"
        " UNION ALL SELECT 1 FROM lab_files WHERE name = ? LIMIT 1",
        (name, path, name),
    ).fetchone()


def purges() -> dict[str, Callable[[], Purge]]:
    """The exam records' kinds (kept `record_days`) in the order a pass runs them."""
    return {
        "imaging.exams": lambda: FileWalk("im_exams", "updated_at", EXAM_OPEN, drop_exam_files),
        "imaging.apply_forms": lambda: Walk("im_apply_forms", "received_at"),
        "imaging.statistics_days": lambda: Walk("im_statistics_days", "date"),
    }


def index_purges() -> dict[str, Callable[[], Purge]]:
    """The image index's kind (kept `index_keep_days` after the file was purged)."""
    return {"imaging.index": lambda: purged_instances}
