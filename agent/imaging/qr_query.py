"""Sans-I/O: a Q/R identifier → SQL over the study index, with DICOM matching (PS3.4 C.2.2.2)."""

from __future__ import annotations

import re
import sqlite3
from functools import lru_cache
from typing import Any

from pydicom.dataset import Dataset

from agent.vocabulary.study_index import NO_MATCH_CLASS, PURGED_PATH, BadIdentifier

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
_LEVEL_TAG, _CHARSET_TAG, _RETRIEVE_AE_TAG = 0x00080052, 0x00080005, 0x00080054
_UNIQUE = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
_PATIENTS = "(SELECT patient_id FROM im_patients UNION SELECT patient_id FROM im_studies) pid"
_FROM = (
    f"{_PATIENTS} LEFT JOIN im_patients p ON p.patient_id = pid.patient_id",
    "im_studies s LEFT JOIN im_patients p ON p.patient_id = s.patient_id",
    "im_series r JOIN im_studies s ON s.study_uid = r.study_uid"
    " LEFT JOIN im_patients p ON p.patient_id = s.patient_id",
    "im_instances i JOIN im_studies s ON s.study_uid = i.study_uid"
    " LEFT JOIN im_series r ON r.series_uid = i.series_uid"
    " LEFT JOIN im_patients p ON p.patient_id = s.patient_id",
)
_ORDER = ("pid.patient_id", "s.study_date, s.study_time, s.study_uid", "r.number, r.series_uid")
_BY_PATIENT = " JOIN im_studies y ON y.study_uid = x.study_uid"


def _count(level: int, table: str, where: str, join: str = "") -> tuple[int, str, str]:
    """A key returning how many `table` rows relate to the match (never matched itself)."""
    return level, f"(SELECT count(*) FROM {table} x{join} WHERE {where})", "count"


# keyword -> (level, SQL expression, matching kind); "count" keys are returned, never matched.
KEYS: dict[str, tuple[int, str, str]] = {
    "PatientID": (0, "{pid}", "text"),
    "PatientName": (0, "p.name", "pn"),
    "PatientBirthDate": (0, "p.birth_date", "date"),
    "PatientSex": (0, "p.sex", "text"),
    "NumberOfPatientRelatedStudies": _count(0, "im_studies", "x.patient_id = {pid}"),
    "NumberOfPatientRelatedSeries": _count(0, "im_series", "y.patient_id = {pid}", _BY_PATIENT),
    "NumberOfPatientRelatedInstances": _count(
        0, "im_instances", "y.patient_id = {pid}", _BY_PATIENT
    ),
    "StudyInstanceUID": (1, "s.study_uid", "uid"),
    "StudyDate": (1, "s.study_date", "date"),
    "StudyTime": (1, "s.study_time", "time"),
    "AccessionNumber": (1, "s.accession", "text"),
    "StudyID": (1, "s.study_id", "text"),
    "StudyDescription": (1, "s.description", "text"),
    "ReferringPhysicianName": (1, "s.referring", "pn"),
    "ModalitiesInStudy": (1, "s.modalities", "multi"),
    "NumberOfStudyRelatedSeries": _count(1, "im_series", "x.study_uid = s.study_uid"),
    "NumberOfStudyRelatedInstances": _count(1, "im_instances", "x.study_uid = s.study_uid"),
    "SeriesInstanceUID": (2, "r.series_uid", "uid"),
    "Modality": (2, "r.modality", "text"),
    "SeriesNumber": (2, "r.number", "int"),
    "SeriesDescription": (2, "r.description", "text"),
    "BodyPartExamined": (2, "r.body_part", "text"),
    "NumberOfSeriesRelatedInstances": _count(2, "im_instances", "x.series_uid = r.series_uid"),
    "SOPInstanceUID": (3, "i.sop_uid", "uid"),
    "SOPClassUID": (3, "i.sop_class", "uid"),
    "InstanceNumber": (3, "i.number", "int"),
    "AvailableTransferSyntaxUID": (3, "i.transfer_syntax", "uid"),
    # UNAVAILABLE: the spool retention policy deleted the file (PS3.4 C.4.1.1.3.2).
    "InstanceAvailability": (
        3,
        "CASE WHEN i.purged_at IS NULL THEN 'ONLINE' ELSE 'UNAVAILABLE' END",
        "text",
    ),
}
_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")


def _level(identifier: Dataset, patient_root: bool) -> int:
    level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    if level not in LEVELS or (level == "PATIENT" and not patient_root):
        raise BadIdentifier("bad QueryRetrieveLevel for this model", _LEVEL_TAG, NO_MATCH_CLASS)
    return LEVELS.index(level)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


@lru_cache(maxsize=256)
def _wild(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """A regex for a DICOM wildcard pattern (`*` any run, `?` one character)."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _pn_groups(value: str) -> str:
    return "=".join(group.rstrip("^ ") for group in value.split("=")).rstrip("=")


def _match_pn(pattern: str, value: str | None) -> bool:
    """PN matching: case-insensitive, trailing empty components ignored, any group may match."""
    if value is None:
        return False
    rx = _wild(_pn_groups(pattern), True)
    return any(rx.fullmatch(c) for c in {_pn_groups(value), *_pn_groups(value).split("=")})


def _match_any(pattern: str, value: str | None) -> bool:
    """Multi-valued attributes (ModalitiesInStudy): some stored value matches some query value."""
    stored = (value or "").split("\\")
    return any(_wild(p, False).fullmatch(s) for p in pattern.split("\\") for s in stored)


def _time(value: str, upper: bool) -> str:
    main, _, fraction = value.replace(":", "").partition(".")
    main += ("235959" if upper else "000000")[len(main) :]
    return f"{main}.{(fraction + ('9' if upper else '0') * 6)[:6]}"


def _match_time(value: str | None, low: str, high: str) -> bool:
    return bool(value) and low <= _time(str(value), False) <= high


def _range(raw: str, pattern: re.Pattern[str], tag: int) -> tuple[str, str]:
    low, dash, high = raw.partition("-")
    low, high = (low.strip(), high.strip()) if dash else (raw, raw)
    if (not low and not high) or any(v and not pattern.match(v) for v in (low, high)):
        raise BadIdentifier(f"bad date/time range {raw!r}", tag)
    return low, high


def _clause(kind: str, expr: str, raw: str, tag: int) -> tuple[str, list[Any]] | None:
    """The WHERE clause matching `raw` against `expr` (None: universal matching)."""
    raw = raw.strip()
    if raw in ("", "*") or kind == "count":
        return None
    values = [v.strip() for v in raw.split("\\")]
    if kind == "uid":
        return f"{expr} IN ({', '.join('?' * len(values))})", values
    if kind == "date":
        low, high = _range(raw.replace(".", ""), _DATE, tag)
        return f"({expr} >= ? AND {expr} <= ?)", [low or "00000000", high or "99999999"]
    if kind == "time":
        low, high = _range(raw.replace(":", ""), _TIME, tag)
        lo = _time(low, False) if low else ""
        return f"dcm_time({expr}, ?, ?)", [lo, _time(high, True) if high else "99"]
    if kind == "int":
        try:
            return f"{expr} IN ({', '.join('?' * len(values))})", [int(v) for v in values]
        except ValueError as err:
            raise BadIdentifier(f"not an integer: {raw!r}", tag) from err
    if kind == "multi":
        return f"dcm_any(?, {expr})", [raw]
    if kind == "pn":
        return "(" + " OR ".join(f"dcm_pn(?, {expr})" for _ in values) + ")", values
    parts = [f"{expr} GLOB ?" if any(c in v for c in "*?") else f"{expr} = ?" for v in values]
    return "(" + " OR ".join(parts) + ")", [
        v.replace("[", "[[]") if "GLOB" in part else v
        for v, part in zip(values, parts, strict=True)
    ]


class Query:
    """A parsed C-FIND identifier: its SQL and how to build each response."""

    def __init__(self, level: int, sql: str, params: list[Any], requested: list[Any]) -> None:
        self.level = LEVELS[level]
        self.sql = sql
        self.params = params
        self.requested = requested  # (tag, VR, column index or None, kind)

    @staticmethod
    def register(conn: sqlite3.Connection) -> None:
        """Add the matching functions the generated SQL calls."""
        conn.create_function("dcm_pn", 2, _match_pn, deterministic=True)
        conn.create_function("dcm_any", 2, _match_any, deterministic=True)
        conn.create_function("dcm_time", 3, _match_time, deterministic=True)

    @classmethod
    def parse(cls, identifier: Dataset, *, patient_root: bool) -> Query:
        """Plan the query; BadIdentifier if it cannot be answered."""
        level = _level(identifier, patient_root)
        pid = "pid.patient_id" if level == 0 else "s.patient_id"
        selects: list[str] = []
        where: list[str] = []
        params: list[Any] = []
        requested: list[Any] = []
        for element in identifier:
            tag = int(element.tag)
            if tag in (_LEVEL_TAG, _CHARSET_TAG, _RETRIEVE_AE_TAG) or element.tag.is_private:
                continue
            key = KEYS.get(element.keyword)
            if key is None or key[0] > level or element.VR == "SQ":
                requested.append((tag, element.VR, None, ""))
                continue
            expr = key[1].format(pid=pid)
            requested.append((tag, element.VR, len(selects), key[2]))
            selects.append(expr)
            if (clause := _clause(key[2], expr, _text(element.value), tag)) is not None:
                where.append(clause[0])
                params.extend(clause[1])
        sql = f"SELECT {', '.join(selects) or '1'} FROM {_FROM[level]}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY " + (_ORDER[level] if level < 3 else "i.number, i.sop_uid")
        return cls(level, sql, params, requested)

    def response(self, row: tuple[Any, ...], ae_title: str) -> Dataset:
        """The pending response's identifier: the requested keys, filled from `row`."""
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.QueryRetrieveLevel = self.level
        ds.RetrieveAETitle = ae_title
        for tag, vr, index, kind in self.requested:
            value = None if index is None else row[index]
            if vr == "SQ":
                ds.add_new(tag, vr, [])
            elif value is None or value == "":
                ds.add_new(tag, vr, None)
            elif kind == "multi":
                ds.add_new(tag, vr, str(value).split("\\"))
            else:
                ds.add_new(tag, vr, value if isinstance(value, int) else str(value))
        return ds


def retrieve_query(identifier: Dataset, *, patient_root: bool) -> tuple[str, list[Any]]:
    """The instances a C-MOVE/C-GET identifier names, by the unique keys down to its level."""
    level = _level(identifier, patient_root)
    where: list[str] = []
    params: list[Any] = []
    for index, keyword in enumerate(_UNIQUE[: level + 1]):
        raw = _text(identifier.get(keyword)).strip()
        if not raw:
            if index == level:
                raise BadIdentifier(f"{keyword} is required", None, NO_MATCH_CLASS)
            continue
        expr = "s.patient_id" if index == 0 else KEYS[keyword][1]
        values = [v.strip() for v in raw.split("\\")]
        where.append(f"{expr} IN ({', '.join('?' * len(values))})")
        params.extend(values)
    sql = (
        f"SELECT i.sop_uid, i.sop_class, i.transfer_syntax,"
        f" CASE WHEN i.purged_at IS NULL THEN i.path ELSE '{PURGED_PATH}' END FROM {_FROM[3]}"
        f" WHERE {' AND '.join(where)} ORDER BY s.study_uid, r.number, i.series_uid, i.number"
    )
    return sql, params
