"""Images PACS deleted: taken out of the study index (kept in im_deleted for the spool's
retention), and the deletion offered to the uplinks whose plan asks for it (pure SQL)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.imaging.index import refresh_modalities
from agent.imaging.plans import Offer, Plans
from agent.journal.transaction import Transaction

DELETED = "study.deleted"


@dataclass(frozen=True, slots=True)
class Deleted:
    """What one deletion took out of the index."""

    studies: list[str]
    series: list[str]
    instances: list[str]
    patient_id: str
    patient_name: str


def studies_of_accession(conn: sqlite3.Connection, accession: str) -> list[str]:
    """The studies an accession number names: by their images, or through an exam joined."""
    return [
        uid
        for (uid,) in conn.execute(
            "SELECT study_uid FROM im_studies WHERE accession = ? UNION"
            " SELECT study_uid FROM im_exams WHERE accession = ? AND study_uid IS NOT NULL"
            " ORDER BY 1",
            (accession, accession),
        )
    ]


def delete_images(
    conn: sqlite3.Connection,
    accession: str,
    series: Sequence[str],
    instances: Sequence[str],
    *,
    at: str,
    event_id: str,
) -> Deleted:
    """Take the accession's images out of the index: the given series and instances, or all."""
    studies = studies_of_accession(conn, accession)
    return _delete(conn, studies, series, instances, at=at, event_id=event_id)


def reject_instances(
    conn: sqlite3.Connection, references: Sequence[Sequence[str]], *, at: str, event_id: str
) -> list[tuple[str, Deleted]]:
    """IOCM: the referenced [study, series, sop] instances out of the index; (accession, what
    was taken out) per study that had any of them."""
    by_study: dict[str, list[str]] = {}
    for study, _series, sop in references:
        by_study.setdefault(study, []).append(sop)
    found = []
    for study, sops in by_study.items():
        row = conn.execute("SELECT accession FROM im_studies WHERE study_uid = ?", (study,))
        accession = row.fetchone()
        if accession is None:
            continue
        deleted = _delete(conn, [study], [], sops, at=at, event_id=event_id)
        if deleted.instances:
            found.append((str(accession[0] or ""), deleted))
    return found


def _delete(
    conn: sqlite3.Connection,
    studies: Sequence[str],
    series: Sequence[str],
    instances: Sequence[str],
    *,
    at: str,
    event_id: str,
) -> Deleted:
    """The given series and instances of `studies` (all their images if none) out of the index."""
    marks = ", ".join("?" * len(studies))
    where, params = f"i.study_uid IN ({marks})", list(studies)
    if series or instances:
        picked = []
        if series:
            picked.append(f"i.series_uid IN ({', '.join('?' * len(series))})")
            params += list(series)
        if instances:
            picked.append(f"i.sop_uid IN ({', '.join('?' * len(instances))})")
            params += list(instances)
        where += f" AND ({' OR '.join(picked)})"
    rows = conn.execute(
        f"SELECT i.sop_uid, i.series_uid, i.study_uid, i.path FROM im_instances i WHERE {where}",
        params,
    ).fetchall()
    patient = conn.execute(
        "SELECT s.patient_id, COALESCE(p.name, '') FROM im_studies s"
        f" LEFT JOIN im_patients p ON p.patient_id = s.patient_id WHERE s.study_uid IN ({marks})"
        " LIMIT 1",
        studies,
    ).fetchone() or ("", "")
    conn.executemany(
        "INSERT INTO im_deleted (sop_uid, series_uid, study_uid, path, deleted_at, event_id)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(*row, at, event_id) for row in rows],
    )
    conn.executemany("DELETE FROM im_instances WHERE sop_uid = ?", [(row[0],) for row in rows])
    touched = sorted({row[2] for row in rows})
    for study in touched:
        _tidy(conn, study)
    return Deleted(touched, sorted({r[1] for r in rows}), [r[0] for r in rows], *patient)


def _tidy(conn: sqlite3.Connection, study_uid: str) -> None:
    """A study's counts after a deletion; its emptied series, and itself if emptied, removed."""
    conn.execute(
        "DELETE FROM im_series WHERE study_uid = ? AND series_uid NOT IN"
        " (SELECT series_uid FROM im_instances WHERE study_uid = ?)",
        (study_uid, study_uid),
    )
    (count,) = conn.execute(
        "SELECT count(*) FROM im_instances WHERE study_uid = ?", (study_uid,)
    ).fetchone()
    if count == 0:
        conn.execute("DELETE FROM im_studies WHERE study_uid = ?", (study_uid,))
        return
    conn.execute("UPDATE im_studies SET instance_count = ? WHERE study_uid = ?", (count, study_uid))
    refresh_modalities(conn, study_uid)


def offer_deletion(
    tx: Transaction, deleted: Deleted, payload: dict[str, Any], plans: Plans, message_id: str
) -> None:
    """Queue `study.deleted` for each uplink asking for deletions: who, when (local ISO), what,
    of whom."""
    message = {
        "accession": payload["accession"],
        "by": payload["by"],
        "at": payload["at"],
        "whole": not (payload.get("series_uids") or payload.get("sop_uids")),
        "patient_id": deleted.patient_id,
        "patient_name": deleted.patient_name,
        "study_uids": deleted.studies,
        "series_uids": deleted.series,
        "sop_uids": deleted.instances,
    }
    for uplink, offers in plans.items():
        if Offer.STUDY_DELETED in offers:
            tx.enqueue(
                uplink=uplink,
                kind=DELETED,
                order_key=f"accession:{payload['accession']}",
                dedupe_key=f"{DELETED}:{message_id}",
                payload=message,
            )
