"""Report images (seed 003 §3.2.3.1 `reportImage`): the JPEG files posted with an exam's report
go into its study as DICOM Secondary Capture, after the push that lists them (pure)."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

from agent.imaging.exams import report_images
from agent.journal.transaction import Transaction
from agent.vocabulary.spool import journal_state_dir, stored_path

KIND = "report.image"
NAMESPACE = uuid.UUID("0b0d7f3a-6f0e-5d8c-9a2b-4e1c3d5f7a90")


def image_uid(study_uid: str, name: str) -> str:
    """The Secondary Capture's SOP Instance UID: the same for the same file of the same study."""
    return f"2.25.{uuid.uuid5(NAMESPACE, f'{study_uid}/{name}').int}"


def series_uid(study_uid: str) -> str:
    """The study's report-image series."""
    return f"2.25.{uuid.uuid5(NAMESPACE, f'{study_uid}/report-images').int}"


def of_exam(conn: sqlite3.Connection, study_uid: str, exam_no: str) -> list[dict[str, str]]:
    """The exam's report images as the push lists them and the C-STORE sends them."""
    return [
        {"name": name, "path": path, "sop_uid": image_uid(study_uid, name)}
        for name, path in report_images(conn, exam_no)
    ]


def queue(
    tx: Transaction, uplink: str, study_uid: str, images: list[dict[str, str]],
    expect: dict[str, Any],
) -> None:  # fmt: skip
    """Queue each image once per uplink (after the push, on the study's order key); `path` is
    the file as found now, `state_path` where it is in the state directory (see rebase_queued)."""
    state = journal_state_dir(tx.conn)
    for image in images:
        tx.enqueue(
            uplink=uplink,
            kind=KIND,
            order_key=f"study:{study_uid}",
            dedupe_key=f"{KIND}:{study_uid}:{image['name']}",
            payload={
                **image,
                "state_path": stored_path(image["path"], state),
                "series_uid": series_uid(study_uid),
                "expect": expect,
            },
        )
