"""What a stable study owes each uplink by its plan: exam pushes, then its images (pure)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from typing import Any

from agent.imaging import report_images
from agent.imaging.exams import Saved, exam_by_number, study_exams
from agent.imaging.index import study_summary, unforwarded
from agent.imaging.plans import Offer, Plans
from agent.journal.transaction import Transaction
from agent.vocabulary.spool import journal_spool_root, spool_file

PUSH = "exam.push"
INSTANCE = "dicom.instance"
AUDITED = "report.audited"
REPORT_FILE = "report.file"


def order_key(study_uid: str) -> str:
    """The outbox order key of everything sent for a study: its pushes precede its images."""
    return f"study:{study_uid}"


def forward(tx: Transaction, study_uid: str, plans: Plans, at: str, push_from: str = "50") -> None:
    """Queue what a stable study with a joined exam (of status `push_from` or later) still owes
    each uplink by its plan."""
    conn = tx.conn
    row = conn.execute("SELECT state FROM im_studies WHERE study_uid = ?", (study_uid,)).fetchone()
    if row is None or row[0] != "stable":
        return
    exams = [e for e in study_exams(conn, study_uid) if _status(e[1]) >= push_from]
    study = study_summary(conn, study_uid)
    if not exams or study is None:
        return  # no exam to push yet: its images wait too (they follow a push)
    expect = {
        "PatientID": study["patient_id"],
        "StudyInstanceUID": study["study_uid"],
        "AccessionNumber": study["accession"],
    }
    images = {exam_no: report_images.of_exam(conn, study_uid, exam_no) for exam_no, *_ in exams}
    for uplink, offers in plans.items():
        if Offer.EXAM_PUSH in offers:
            for exam_no, document, record in exams:
                payload: dict[str, Any] = {"exam": document, "record": record, "study": study}
                if images[exam_no]:  # only then: other pushes keep their digest
                    payload["report_images"] = images[exam_no]
                _push(tx, uplink, order_key(study_uid), exam_no, payload)
        if Offer.IMAGES not in offers:
            continue
        for listed in images.values():
            report_images.queue(tx, uplink, study_uid, listed, expect)
        root = journal_spool_root(conn)
        for sop_uid, sop_class, syntax, path, event_id in unforwarded(conn, study_uid, uplink):
            tx.enqueue(
                uplink=uplink,
                kind=INSTANCE,
                order_key=order_key(study_uid),
                # Per received file: an instance overwritten later is sent again.
                dedupe_key=f"{INSTANCE}:{sop_uid}:{event_id}",
                payload={
                    # The file as found now, and as the index keeps it (re-based at start when
                    # the state directory has moved: see rebase_queued_files).
                    "path": spool_file(path, root),
                    "spool_path": path,
                    "sop_uid": sop_uid,
                    "sop_class": sop_class,
                    "transfer_syntax": syntax,
                    "expect": expect,
                },
            )
            conn.execute(
                "INSERT INTO im_forwarded (uplink, sop_uid, queued_at) VALUES (?, ?, ?)",
                (uplink, sop_uid, at),
            )


def push_without_images(tx: Transaction, saved: Saved, document: Any, plans: Plans) -> None:
    """Queue the push of a final exam that has no study in the spool, for each uplink asking
    for those: its payload has no study (the uplink says where its images are, if anywhere)."""
    exam_no = saved.record["exam_no"]
    for uplink, offers in plans.items():
        if Offer.EXAM_WITHOUT_IMAGES in offers:
            payload = {"exam": document, "record": saved.record, "study": None}
            _push(tx, uplink, f"exam:{exam_no}", exam_no, payload)


def report_audited(tx: Transaction, saved: Saved, plans: Plans) -> None:
    """Queue `report.audited` for each uplink asking for it: the record, and its study if known."""
    record = saved.record
    study = study_summary(tx.conn, saved.study_uid) if saved.study_uid else None
    for uplink, offers in plans.items():
        if Offer.REPORT_AUDITED in offers:
            tx.enqueue(
                uplink=uplink,
                kind=AUDITED,
                order_key=f"exam:{record['exam_no']}",
                # A report changed after its audit is a new message; the same one is not.
                dedupe_key=f"{AUDITED}:{record['exam_no']}:{saved.report_digest}",
                payload={"record": record, "study": study},
            )


def _status(document: Any) -> str:
    info = document.get("examInfo") if isinstance(document, dict) else None
    return str(info.get("examStatus") or "") if isinstance(info, dict) else ""


def report_files(tx: Transaction, exam_no: str, plans: Plans) -> None:
    """Queue `report.file` for each report PDF of an audited exam, after its `report.audited`
    (same order key; once per file and uplink: a corrected report brings a new file)."""
    wanted = [uplink for uplink, offers in plans.items() if Offer.REPORT_FILES in offers]
    if not wanted:
        return
    record = exam_by_number(tx.conn, exam_no)
    if record is None or record.get("exam_no") != exam_no or record.get("status") != "final":
        return  # no audited report yet: its audit queues the files
    files = [f for f in record.pop("files", []) if f["kind"] == "report_pdf"]
    for uplink in wanted:
        for file in files:
            tx.enqueue(
                uplink=uplink,
                kind=REPORT_FILE,
                order_key=f"exam:{exam_no}",
                dedupe_key=f"{REPORT_FILE}:{exam_no}:{file['name']}",
                payload={"record": record, "file": dict(file)},
            )


def _push(tx: Transaction, uplink: str, key: str, exam_no: str, payload: dict[str, Any]) -> None:
    """Queue the push unless the key's last push of this exam carried the same content."""
    text = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    prefix = f"{PUSH}:{exam_no}"
    last = _last_push(tx.conn, uplink, key, prefix)
    if last is not None and last[0] == digest:
        return
    # The sequence number makes A → B → A push A again although A's key was used before.
    seq = 1 if last is None else last[1] + 1
    tx.enqueue(
        uplink=uplink,
        kind=PUSH,
        order_key=key,
        dedupe_key=f"{prefix}:{seq}:{digest}",
        payload=payload,
    )


def _last_push(
    conn: sqlite3.Connection, uplink: str, key: str, prefix: str
) -> tuple[str, int] | None:
    """(digest, sequence) of the newest push of this exam under this order key and uplink."""
    for (dedupe,) in conn.execute(
        "SELECT dedupe_key FROM outbox WHERE uplink = ? AND order_key = ? AND kind = ?"
        " ORDER BY id DESC",
        (uplink, key, PUSH),
    ):
        head, seq, digest = str(dedupe).rsplit(":", 2)
        if head == prefix:
            return digest, int(seq)
    return None


def rebase_queued_files(conn: sqlite3.Connection) -> int:
    """Point the undelivered images' and report images' `path` at the spool and exam files
    beside the journal (the state directory was moved or restored elsewhere); return how many
    messages changed."""
    root = journal_spool_root(conn)
    if root is None:
        return 0
    prefix = str(root) + os.sep
    # Every uplink's open messages through the outbox_queue index (uplink, state, id): the
    # uplinks are enumerated by a loose index scan, not by reading years of delivered messages.
    uplinks = [
        name
        for (name,) in conn.execute(
            "WITH RECURSIVE u(name) AS (SELECT MIN(uplink) FROM outbox UNION ALL"
            " SELECT (SELECT MIN(uplink) FROM outbox WHERE uplink > u.name) FROM u"
            " WHERE u.name IS NOT NULL) SELECT name FROM u WHERE name IS NOT NULL"
        )
    ]
    cursor = conn.execute(
        "UPDATE outbox SET payload = json_set(payload, '$.path',"
        " ?1 || json_extract(payload, '$.spool_path'))"
        " WHERE uplink IN (SELECT value FROM json_each(?3))"
        " AND state IN ('pending', 'inflight', 'dead') AND kind = ?2"
        " AND json_extract(payload, '$.spool_path') NOT LIKE '/%'"
        " AND json_extract(payload, '$.path') IS NOT ?1 || json_extract(payload, '$.spool_path')",
        (prefix, INSTANCE, json.dumps(uplinks)),
    )
    reports = conn.execute(
        "UPDATE outbox SET payload = json_set(payload, '$.path',"
        " ?1 || json_extract(payload, '$.state_path'))"
        " WHERE uplink IN (SELECT value FROM json_each(?3))"
        " AND state IN ('pending', 'inflight', 'dead') AND kind = ?2"
        " AND json_extract(payload, '$.state_path') NOT LIKE '/%'"
        " AND json_extract(payload, '$.path') IS NOT ?1 || json_extract(payload, '$.state_path')",
        (str(root.parent) + os.sep, report_images.KIND, json.dumps(uplinks)),
    )
    return cursor.rowcount + reports.rowcount
