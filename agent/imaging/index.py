"""The study index over the spool: patients, studies, series, instances (pure SQL, no I/O)."""

from __future__ import annotations

import sqlite3
from typing import Any, Literal

from agent.vocabulary.spool import journal_spool_root, stored_path

Stored = Literal["new", "kept_first", "replaced"]


def _text(payload: dict[str, Any], key: str) -> str:
    value = payload.get(key)
    return "" if value is None else str(value)


def _number(payload: dict[str, Any], key: str) -> int | None:
    value = payload.get(key)
    return None if value is None or value == "" else int(value)


def add_instance(
    conn: sqlite3.Connection,
    payload: dict[str, Any],
    *,
    event_id: str,
    at: str,
    duplicates: Literal["keep_first", "overwrite"],
) -> Stored:
    """Index one `dicom.stored` instance received at `at` (ISO UTC) under the duplicate policy."""
    sop_uid, study_uid = _text(payload, "sop_instance_uid"), _text(payload, "study_uid")
    path = stored_path(str(payload["path"]), journal_spool_root(conn))
    old = conn.execute(
        "SELECT path, purged_at FROM im_instances WHERE sop_uid = ?", (sop_uid,)
    ).fetchone()
    # The same file received again (a re-send to the same spool path) is not a duplicate copy;
    # an image whose file was purged takes the new one whatever the duplicate policy.
    if old is not None and duplicates == "keep_first" and old[0] != path and old[1] is None:
        return "kept_first"
    _patient(conn, payload)
    _study(conn, payload, at)
    _series(conn, payload)
    row = (
        _text(payload, "series_uid"),
        study_uid,
        _text(payload, "sop_class_uid"),
        _text(payload, "transfer_syntax"),
        _number(payload, "instance_number"),
        path,
        int(payload["size"]),
        at,
        _text(payload, "calling_ae"),
        event_id,
        sop_uid,
    )
    if old is None:
        conn.execute(
            "INSERT INTO im_instances (series_uid, study_uid, sop_class, transfer_syntax, number,"
            " path, size, received_at, calling_ae, event_id, sop_uid)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )
        conn.execute(
            "UPDATE im_studies SET instance_count = instance_count + 1 WHERE study_uid = ?",
            (study_uid,),
        )
    else:
        if old[0] != path:  # another file: the uplinks that had the old one get it
            conn.execute("DELETE FROM im_forwarded WHERE sop_uid = ?", (sop_uid,))
        conn.execute(
            "UPDATE im_instances SET series_uid = ?, study_uid = ?, sop_class = ?,"
            " transfer_syntax = ?, number = ?, path = ?, size = ?, received_at = ?,"
            " calling_ae = ?, event_id = ?, purged_at = NULL WHERE sop_uid = ?",
            row,
        )
    refresh_modalities(conn, study_uid)
    return "new" if old is None else "replaced"


def _patient(conn: sqlite3.Connection, payload: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO im_patients (patient_id, name, birth_date, sex) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (patient_id) DO UPDATE SET"
        " name = COALESCE(NULLIF(excluded.name, ''), name),"
        " birth_date = COALESCE(NULLIF(excluded.birth_date, ''), birth_date),"
        " sex = COALESCE(NULLIF(excluded.sex, ''), sex)",
        (
            _text(payload, "patient_id"),
            _text(payload, "patient_name"),
            _text(payload, "patient_birth_date"),
            _text(payload, "patient_sex"),
        ),
    )


def _study(conn: sqlite3.Connection, payload: dict[str, Any], at: str) -> None:
    """Create or refresh the study; a new instance makes a stable study 'receiving' again."""
    # Attributes come from the first instance; later ones only fill what it left empty.
    conn.execute(
        "INSERT INTO im_studies (study_uid, patient_id, accession, study_id, study_date,"
        " study_time, description, referring, modalities, first_received, last_received)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?)"
        " ON CONFLICT (study_uid) DO UPDATE SET"
        " accession = COALESCE(NULLIF(accession, ''), excluded.accession),"
        " study_id = COALESCE(NULLIF(study_id, ''), excluded.study_id),"
        " study_date = COALESCE(NULLIF(study_date, ''), excluded.study_date),"
        " study_time = COALESCE(NULLIF(study_time, ''), excluded.study_time),"
        " description = COALESCE(NULLIF(description, ''), excluded.description),"
        " referring = COALESCE(NULLIF(referring, ''), excluded.referring),"
        " last_received = MAX(last_received, excluded.last_received),"
        " state = 'receiving'",
        (
            _text(payload, "study_uid"),
            _text(payload, "patient_id"),
            _text(payload, "accession_number"),
            _text(payload, "study_id"),
            _text(payload, "study_date"),
            _text(payload, "study_time"),
            _text(payload, "study_description"),
            _text(payload, "referring_physician"),
            at,
            at,
        ),
    )


def _series(conn: sqlite3.Connection, payload: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO im_series (series_uid, study_uid, modality, number, description, body_part)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (series_uid) DO UPDATE SET"
        " modality = COALESCE(NULLIF(modality, ''), excluded.modality),"
        " number = COALESCE(number, excluded.number),"
        " description = COALESCE(NULLIF(description, ''), excluded.description),"
        " body_part = COALESCE(NULLIF(body_part, ''), excluded.body_part)",
        (
            _text(payload, "series_uid"),
            _text(payload, "study_uid"),
            _text(payload, "modality"),
            _number(payload, "series_number"),
            _text(payload, "series_description"),
            _text(payload, "body_part"),
        ),
    )


def refresh_modalities(conn: sqlite3.Connection, study_uid: str) -> None:
    """ModalitiesInStudy again from the study's series."""
    modalities = [
        m
        for (m,) in conn.execute(
            "SELECT DISTINCT modality FROM im_series WHERE study_uid = ? AND modality != ''"
            " ORDER BY modality",
            (study_uid,),
        )
    ]
    conn.execute(
        "UPDATE im_studies SET modalities = ? WHERE study_uid = ?",
        ("\\".join(modalities), study_uid),
    )


def study_summary(conn: sqlite3.Connection, study_uid: str) -> dict[str, Any] | None:
    """The study as an exam push carries it (contracts: payload["study"]); None if unknown."""
    row = conn.execute(
        "SELECT s.study_uid, s.patient_id, p.name, p.sex, p.birth_date, s.accession,"
        " s.study_date, s.study_time, s.description, s.modalities, s.instance_count"
        " FROM im_studies s LEFT JOIN im_patients p ON p.patient_id = s.patient_id"
        " WHERE s.study_uid = ?",
        (study_uid,),
    ).fetchone()
    if row is None:
        return None
    keys = (
        "study_uid",
        "patient_id",
        "patient_name",
        "patient_sex",
        "patient_birth_date",
        "accession",
        "study_date",
        "study_time",
        "description",
    )
    study: dict[str, Any] = {k: v or "" for k, v in zip(keys, row[:9], strict=True)}
    study["modalities"] = [m for m in (row[9] or "").split("\\") if m]
    study["instance_count"] = row[10]
    study["series"] = [
        {
            "series_uid": uid,
            "modality": modality or "",
            "number": number,
            "description": description or "",
            "body_part": body_part or "",
            "instance_count": count,
        }
        for uid, modality, number, description, body_part, count in conn.execute(
            "SELECT s.series_uid, s.modality, s.number, s.description, s.body_part,"
            " (SELECT COUNT(*) FROM im_instances i WHERE i.series_uid = s.series_uid)"
            " FROM im_series s WHERE s.study_uid = ?"
            " ORDER BY s.number IS NULL, s.number, s.series_uid",
            (study_uid,),
        )
    ]
    return study


def unforwarded(
    conn: sqlite3.Connection, study_uid: str, uplink: str
) -> list[tuple[str, str, str, str, str]]:
    """(sop_uid, sop_class, syntax, path, event_id) not yet queued for `uplink`, in order."""
    cursor = conn.execute(
        "SELECT i.sop_uid, i.sop_class, i.transfer_syntax, i.path, i.event_id FROM im_instances i"
        " LEFT JOIN im_series s ON s.series_uid = i.series_uid"
        " LEFT JOIN im_forwarded f ON f.uplink = ? AND f.sop_uid = i.sop_uid"
        " WHERE i.study_uid = ? AND f.sop_uid IS NULL"
        " ORDER BY s.number IS NULL, s.number, i.series_uid, i.number IS NULL, i.number, i.sop_uid",
        (uplink, study_uid),
    )
    return list(cursor.fetchall())
