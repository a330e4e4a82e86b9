"""Query/Retrieve SCP over the study index: C-FIND, C-MOVE, C-GET, patient and study root."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.request import pathname2url

import structlog
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import build_context, evt
from pynetdicom.presentation import PresentationContext

log = structlog.get_logger(__name__)

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PATIENT_ROOT = {PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET}
PENDING, CANCEL = 0xFF00, 0xFE00
OUT_OF_RESOURCES, NO_MATCH_CLASS, UNABLE = 0xA700, 0xA900, 0xC000
MAX_CONTEXTS = 128
VERIFICATION = "1.2.840.10008.1.1"  # what a failed move still has to associate with

Handler = Callable[..., Any]


def _failure(status: int, comment: str, offending: int | None = None) -> Dataset:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment[:64]
    if offending is not None:
        ds.OffendingElement = [offending]
    return ds


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
_COUNT = "(SELECT count(*) FROM {table} x{join} WHERE {where})"
_BY_PATIENT = " JOIN im_studies y ON y.study_uid = x.study_uid"
# keyword -> (level, SQL expression, matching kind); "count" keys are returned, never matched.
KEYS: dict[str, tuple[int, str, str]] = {
    "PatientID": (0, "{pid}", "text"),
    "PatientName": (0, "p.name", "pn"),
    "PatientBirthDate": (0, "p.birth_date", "date"),
    "PatientSex": (0, "p.sex", "text"),
    "NumberOfPatientRelatedStudies": (
        0,
        _COUNT.format(table="im_studies", join="", where="x.patient_id = {pid}"),
        "count",
    ),
    "NumberOfPatientRelatedSeries": (
        0,
        _COUNT.format(table="im_series", join=_BY_PATIENT, where="y.patient_id = {pid}"),
        "count",
    ),
    "NumberOfPatientRelatedInstances": (
        0,
        _COUNT.format(table="im_instances", join=_BY_PATIENT, where="y.patient_id = {pid}"),
        "count",
    ),
    "StudyInstanceUID": (1, "s.study_uid", "uid"),
    "StudyDate": (1, "s.study_date", "date"),
    "StudyTime": (1, "s.study_time", "time"),
    "AccessionNumber": (1, "s.accession", "text"),
    "StudyID": (1, "s.study_id", "text"),
    "StudyDescription": (1, "s.description", "text"),
    "ReferringPhysicianName": (1, "s.referring", "pn"),
    "ModalitiesInStudy": (1, "s.modalities", "multi"),
    "NumberOfStudyRelatedSeries": (
        1,
        _COUNT.format(table="im_series", join="", where="x.study_uid = s.study_uid"),
        "count",
    ),
    "NumberOfStudyRelatedInstances": (
        1,
        _COUNT.format(table="im_instances", join="", where="x.study_uid = s.study_uid"),
        "count",
    ),
    "SeriesInstanceUID": (2, "r.series_uid", "uid"),
    "Modality": (2, "r.modality", "text"),
    "SeriesNumber": (2, "r.number", "int"),
    "SeriesDescription": (2, "r.description", "text"),
    "BodyPartExamined": (2, "r.body_part", "text"),
    "NumberOfSeriesRelatedInstances": (
        2,
        _COUNT.format(table="im_instances", join="", where="x.series_uid = r.series_uid"),
        "count",
    ),
    "SOPInstanceUID": (3, "i.sop_uid", "uid"),
    "SOPClassUID": (3, "i.sop_class", "uid"),
    "InstanceNumber": (3, "i.number", "int"),
    "AvailableTransferSyntaxUID": (3, "i.transfer_syntax", "uid"),
}
_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")


class BadIdentifier(Exception):
    """The request's identifier cannot be answered; `status` and `tag` go into the response."""

    def __init__(self, message: str, tag: int | None = None, status: int = UNABLE) -> None:
        super().__init__(message)
        self.tag = tag
        self.status = status


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
        f"SELECT i.sop_uid, i.sop_class, i.transfer_syntax, i.path FROM {_FROM[3]}"
        f" WHERE {' AND '.join(where)} ORDER BY s.study_uid, r.number, i.series_uid, i.number"
    )
    return sql, params


class QueryRetrieve:
    """Answers Q/R requests from the index tables (read-only) and sends the spool's files."""

    def __init__(
        self,
        db_path: Path,
        destinations: Mapping[str, tuple[str, int]],
        ae_title: str,
        spool_dir: Path | None = None,
    ) -> None:
        self.db_path = db_path
        self.destinations = {ae.strip(): addr for ae, addr in destinations.items()}
        self.ae_title = ae_title
        self.spool_dir = spool_dir or db_path.parent / "spool"

    def contexts(self) -> list[str]:
        """The Q/R SOP classes to support as SCP (Patient and Study Root FIND/MOVE/GET)."""
        return [*sorted(PATIENT_ROOT), STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET]

    def handlers(self) -> list[tuple[Any, Handler]]:
        """The pynetdicom event handlers to bind on the AE's server."""
        return [
            (evt.EVT_C_FIND, self.on_find),
            (evt.EVT_C_MOVE, self.on_move),
            (evt.EVT_C_GET, self.on_get),
        ]

    def _connect(self) -> sqlite3.Connection:
        uri = f"file:{pathname2url(str(self.db_path))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        Query.register(conn)
        return conn

    def _identifier(self, event: Any) -> tuple[Dataset, bool]:
        """The request's identifier and whether the model is Patient Root."""
        identifier: Dataset = event.identifier
        return identifier, event.context.abstract_syntax in PATIENT_ROOT

    def on_find(self, event: Any) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """EVT_C_FIND: one pending response per match, only the requested keys."""
        try:
            identifier, patient_root = self._identifier(event)
            query = Query.parse(identifier, patient_root=patient_root)
        except BadIdentifier as err:
            yield _failure(err.status, str(err), err.tag), None
            return
        except Exception as err:  # an identifier pydicom cannot decode
            yield _failure(UNABLE, f"cannot decode identifier: {type(err).__name__}"), None
            return
        try:
            conn = self._connect()
            try:
                rows = conn.execute(query.sql, query.params).fetchall()
            finally:
                conn.close()
        except sqlite3.Error as err:
            log.warning("qr.index_unavailable", error=str(err))
            yield _failure(OUT_OF_RESOURCES, "study index unavailable"), None
            return
        log.info("qr.find", level=query.level, matches=len(rows), calling_ae=_calling(event))
        for row in rows:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, query.response(row, self.ae_title)

    def on_move(self, event: Any) -> Iterator[Any]:
        """EVT_C_MOVE: the destination, the number of instances, then each instance's dataset."""
        destination = self.destinations.get(str(event.move_destination).strip())
        if destination is None:
            log.warning("qr.move_destination_unknown", destination=str(event.move_destination))
            yield None, None  # pynetdicom answers 0xA801 Move Destination Unknown
            return
        matches = self._matches(event)
        if isinstance(matches, Dataset):
            yield (*destination, {"contexts": [build_context(VERIFICATION)]})
            yield 1  # the status must follow a sub-operation count; nothing is sent
            yield matches, None
            return
        contexts = _storage_contexts(matches)
        yield (*destination, {"contexts": contexts})
        yield from self._send(event, matches, "move")

    def on_get(self, event: Any) -> Iterator[Any]:
        """EVT_C_GET: the number of instances, then each instance's dataset on the same link."""
        matches = self._matches(event)
        if isinstance(matches, Dataset):
            yield 1
            yield matches, None
            return
        yield from self._send(event, matches, "get")

    def _matches(self, event: Any) -> list[tuple[str, str, str, str]] | Dataset:
        """(sop_uid, sop_class, transfer_syntax, path) per instance, or a failure status."""
        try:
            identifier, patient_root = self._identifier(event)
            sql, params = retrieve_query(identifier, patient_root=patient_root)
        except BadIdentifier as err:
            return _failure(err.status, str(err), err.tag)
        except Exception as err:
            return _failure(UNABLE, f"cannot decode identifier: {type(err).__name__}")
        try:
            conn = self._connect()
            try:
                return [tuple(row) for row in conn.execute(sql, params)]
            finally:
                conn.close()
        except sqlite3.Error as err:
            log.warning("qr.index_unavailable", error=str(err))
            return _failure(0xA701, "study index unavailable")

    def _send(self, event: Any, matches: list[tuple[str, str, str, str]], op: str) -> Iterator[Any]:
        log.info(f"qr.{op}", instances=len(matches), calling_ae=_calling(event))
        yield len(matches)
        for sop_uid, sop_class, _syntax, relative in matches:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, self._read(sop_uid, sop_class, relative)

    def _read(self, sop_uid: str, sop_class: str, relative: str) -> Dataset:
        """The spool file's dataset as stored (elements stay raw, re-encoded byte for byte)."""
        try:
            return dcmread(self.spool_dir / relative)
        except (OSError, InvalidDicomError) as err:
            log.warning("qr.instance_unreadable", error=type(err).__name__)
            # No file meta: pynetdicom refuses it, counting a failed sub-operation for this UID.
            stub = Dataset()
            stub.SOPClassUID = sop_class
            stub.SOPInstanceUID = sop_uid
            return stub


def _storage_contexts(matches: list[tuple[str, str, str, str]]) -> list[PresentationContext]:
    """Per SOP class: one context per stored transfer syntax alone (so the file goes as stored
    when the destination accepts it), then one offering the uncompressed syntaxes (converted)."""
    syntaxes: dict[str, list[str]] = {}
    for _uid, sop_class, syntax, _path in matches:
        found = syntaxes.setdefault(sop_class, [])
        if syntax not in found:
            found.append(syntax)
    contexts = []
    for sop_class, found in syntaxes.items():
        for syntax in found:
            contexts.append(build_context(sop_class, syntax))
        contexts.append(build_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
    return contexts[:MAX_CONTEXTS]


def _calling(event: Any) -> str:
    return str(event.assoc.requestor.ae_title).strip()
