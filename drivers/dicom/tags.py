"""Read a DICOM file's identifying tags in one structural pass, without decoding pixel data."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble
from pydicom.tag import BaseTag, Tag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

# Payload key → tag; the text values of `dicom.stored` (contracts: "" when absent).
TEXT_TAGS: dict[str, BaseTag] = {
    "sop_class_uid": Tag(0x0008, 0x0016),
    "sop_instance_uid": Tag(0x0008, 0x0018),
    "study_uid": Tag(0x0020, 0x000D),
    "series_uid": Tag(0x0020, 0x000E),
    "patient_id": Tag(0x0010, 0x0020),
    "patient_name": Tag(0x0010, 0x0010),
    "patient_birth_date": Tag(0x0010, 0x0030),
    "patient_sex": Tag(0x0010, 0x0040),
    "accession_number": Tag(0x0008, 0x0050),
    "study_id": Tag(0x0020, 0x0010),
    "study_date": Tag(0x0008, 0x0020),
    "study_time": Tag(0x0008, 0x0030),
    "study_description": Tag(0x0008, 0x1030),
    "referring_physician": Tag(0x0008, 0x0090),
    "modality": Tag(0x0008, 0x0060),
    "series_description": Tag(0x0008, 0x103E),
    "body_part": Tag(0x0018, 0x0015),
}
INT_TAGS: dict[str, BaseTag] = {
    "series_number": Tag(0x0020, 0x0011),
    "instance_number": Tag(0x0020, 0x0013),
}
# IOCM (PS3.4 Annex KK): a Key Object Selection whose title is one of these rejects the
# instances it references (CID 7011: quality, patient safety, worklist entry, retention).
KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"
REJECTION_CODES = frozenset({"113001", "113037", "113038", "113039"})
CHARSET = Tag(0x0008, 0x0005)
REQUIRED = ("sop_class_uid", "sop_instance_uid", "study_uid", "series_uid")
WANTED = frozenset({CHARSET, *TEXT_TAGS.values(), *INT_TAGS.values()})
ROUTING_KEYS = ("sop_class_uid", "sop_instance_uid", "study_uid", "patient_id", "accession_number")
ROUTING = frozenset(int(TEXT_TAGS[key]) for key in ROUTING_KEYS)  # ints: hashed and compared in C
UNDEFINED = 0xFFFFFFFF
DEFER = 4096  # values larger than this are skipped by seeking, never read
HEAD = 65_536  # the fast path reads this much at once; the identifying tags come before it
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                      b"UR", b"UT", b"UV"})  # fmt: skip
TEXT_VRS = frozenset({b"AE", b"CS", b"DA", b"DS", b"DT", b"IS", b"LO", b"LT", b"PN", b"SH",
                      b"ST", b"TM", b"UI"})  # fmt: skip
FAST_SYNTAXES = {ExplicitVRLittleEndian: False, ImplicitVRLittleEndian: True}
_TAG = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


class _Slow(Exception):
    """Something the fast path does not handle: read the file with pydicom instead."""


class UnreadableDataset(Exception):
    """The file is not a complete DICOM dataset with the identifying UIDs; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_sop_uid(path: Path) -> str | None:
    """The SOP Instance UID of a complete Part 10 file ("" if it has none); None if incomplete."""
    try:
        return str(read_identity(path).get("sop_instance_uid") or "")
    except UnreadableDataset:
        return None


def read_identity(path: Path) -> dict[str, Any]:
    """Return the transfer syntax and identifying tags of a Part 10 file; check it is complete."""
    try:
        with path.open("rb") as fp:
            try:
                return _with_rejections(path, _fast(fp, path.stat().st_size))
            except (_Slow, struct.error, UnicodeDecodeError):
                fp.seek(0)
            read_preamble(fp, False)
            meta = _read_file_meta_info(fp)
            syntax = str(meta.get("TransferSyntaxUID", ""))
            if not syntax:
                raise UnreadableDataset("no transfer syntax")
            if syntax == DeflatedExplicitVRLittleEndian:
                ds = dcmread(path)  # inflates (rare); a cut stream fails in zlib
                found = Dataset({tag: ds[tag] for tag in WANTED if tag in ds})
            else:
                found = _walk(fp, syntax, path.stat().st_size)
            return _with_rejections(path, {"transfer_syntax": syntax, **_values(found)})
    except UnreadableDataset:
        raise
    except Exception as err:  # every parser failure means the same: cannot understand
        raise UnreadableDataset(f"unparseable: {type(err).__name__}") from err


def read_routing(path: Path) -> dict[str, Any]:
    """What forwarding a spool file needs: transfer syntax, SOP class and instance, study,
    patient ID and accession number. Without pydicom whenever these are plain ASCII (whatever
    the other tags hold, e.g. a UTF-8 patient name); `read_identity`'s values otherwise."""
    with path.open("rb") as fp:
        try:
            return _fast(fp, path.stat().st_size, ROUTING, _routing_values)
        except (_Slow, struct.error, UnicodeDecodeError):
            pass
    return read_identity(path)


def routing_of(fp: BinaryIO, size: int) -> dict[str, Any] | None:
    """`read_routing`'s values from a Part 10 stream of `size` bytes without pydicom; None when
    they need it (not plain ASCII, another transfer syntax, anything unusual)."""
    try:
        return _fast(fp, size, ROUTING, _routing_values)
    except (_Slow, struct.error, UnicodeDecodeError):
        return None


def _routing_values(found: dict[int, bytes]) -> dict[str, Any]:
    values = {key: _ascii(found.get(TEXT_TAGS[key], b"")) for key in ROUTING_KEYS}
    if not values["sop_class_uid"] or not values["sop_instance_uid"]:
        raise _Slow  # let read_identity say what is missing
    return values


def _with_rejections(path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """`identity`, with `rejected` when the file is an IOCM rejection note (a KOS)."""
    if identity.get("sop_class_uid") == KEY_OBJECT_SELECTION:
        rejected = rejection_note(dcmread(path))  # a small object without pixel data
        if rejected is not None:
            identity["rejected"] = rejected
    return identity


def rejection_note(ds: Dataset) -> dict[str, Any] | None:
    """{code, instances: [[study, series, sop], ...]} of an IOCM rejection note; else None."""
    titles = ds.get("ConceptNameCodeSequence") or []
    code = str(titles[0].get("CodeValue", "")) if titles else ""
    if code not in REJECTION_CODES:
        return None
    instances = [
        [
            str(study.StudyInstanceUID),
            str(series.SeriesInstanceUID),
            str(sop.ReferencedSOPInstanceUID),
        ]
        for study in ds.get("CurrentRequestedProcedureEvidenceSequence") or []
        for series in study.get("ReferencedSeriesSequence") or []
        for sop in series.get("ReferencedSOPSequence") or []
    ]
    return {"code": code, "instances": instances}


def _walk(fp: BinaryIO, syntax: str, size: int) -> Dataset:
    """Step over every top-level element, keeping the wanted ones; fail if the file is cut."""
    uid = UID(syntax)
    if not uid.is_transfer_syntax:
        raise UnreadableDataset("unknown transfer syntax")
    raw: dict[BaseTag, DataElement | RawDataElement] = {}
    end = fp.tell()
    for element in data_element_generator(
        fp, uid.is_implicit_VR, uid.is_little_endian, defer_size=DEFER
    ):
        if not isinstance(element, RawDataElement):
            raise UnreadableDataset("unexpected element")
        if element.length != UNDEFINED and element.value_tell + element.length > size:
            raise UnreadableDataset("truncated")  # a short value is read without complaint
        end = fp.tell()
        if element.tag in WANTED:
            raw[element.tag] = element
    if not raw:
        raise UnreadableDataset("empty dataset")
    if end != size:
        raise UnreadableDataset("truncated")  # a cut element header ends the walk silently
    return Dataset(raw)  # only text values are wanted: the byte order does not matter


def _fast(
    fp: BinaryIO,
    size: int,
    wanted: frozenset[int] = WANTED,
    values: Callable[[dict[int, bytes]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The common case without pydicom: Explicit/Implicit VR Little Endian, defined lengths,
    ASCII values. Anything else raises `_Slow`, so the result is always pydicom's. `wanted`
    tags are decoded by `values` (the identity's, after checking the whole file is there, by
    default; with `values` the walk ends after the last wanted tag)."""
    last = max(wanted) if values is not None else 0xFFFFFFFF
    head = fp.read(HEAD)
    if head[128:132] != b"DICM":
        raise _Slow
    pos, syntax = 132, ""
    while pos + 8 <= len(head) and _TAG.unpack_from(head, pos)[0] == 0x0002:
        tag, vr, start, length = _header(head, pos, False)
        if length == UNDEFINED or start + length > len(head):
            raise _Slow
        if tag == 0x0002_0010:
            syntax = head[start : start + length].decode("ascii").rstrip("\0 ")
        pos = start + length
    implicit = FAST_SYNTAXES.get(syntax)  # type: ignore[call-overload]  # a UID is a str
    if implicit is None:
        raise _Slow
    found: dict[int, bytes] = {}
    while pos < size:
        if pos + 12 > len(head):  # past the head (pixel data, trailing padding): read headers
            fp.seek(pos)
            chunk, base = fp.read(12), pos
        else:
            chunk, base = head, 0
        tag, vr, start, length = _header(chunk, pos - base, implicit)
        if tag > last:  # elements are in ascending tag order: no wanted one follows
            pos = size
            break
        start += base
        if length == UNDEFINED or tag >> 16 in (0x0002, 0xFFFE):
            raise _Slow  # sequences/encapsulated pixel data of undefined length, stray items
        if start + length > size:
            raise UnreadableDataset("truncated")
        if tag in wanted:
            if start + length > len(head) or (vr and vr not in TEXT_VRS):
                raise _Slow
            found[tag] = head[start : start + length]
        pos = start + length
    if pos != size or not found:
        raise _Slow  # let pydicom decide what is wrong with it
    return {"transfer_syntax": syntax, **(values or _ascii_values)(found)}


def _header(buf: bytes, pos: int, implicit: bool) -> tuple[int, bytes, int, int]:
    """(tag, VR or b"", value start, value length) of the element header at `pos`."""
    group, element = _TAG.unpack_from(buf, pos)
    tag = group << 16 | element
    if implicit or group == 0xFFFE:
        return tag, b"", pos + 8, _U32.unpack_from(buf, pos + 4)[0]
    vr = buf[pos + 4 : pos + 6]
    if vr in LONG_VRS:
        return tag, vr, pos + 12, _U32.unpack_from(buf, pos + 8)[0]
    if len(vr) != 2:
        raise struct.error("cut header")
    return tag, vr, pos + 8, _U16.unpack_from(buf, pos + 6)[0]


def _ascii_values(found: dict[int, bytes]) -> dict[str, Any]:
    """`_values` for plain ASCII single values (no escape, backslash or NUL)."""
    values: dict[str, Any] = {}
    for key, tag in TEXT_TAGS.items():
        values[key] = _ascii(found.get(tag, b""))
    for key, tag in INT_TAGS.items():
        text = _ascii(found.get(tag, b""))
        if text and not text.lstrip("+-").isdigit():
            raise _Slow
        values[key] = int(text) if text else None
    missing = [key for key in REQUIRED if not values[key]]
    if missing:
        raise UnreadableDataset(f"missing {', '.join(missing)}")
    return values


def _ascii(raw: bytes) -> str:
    if not raw.isascii() or b"\x1b" in raw or b"\\" in raw or b"\0" in raw.rstrip(b"\0"):
        raise _Slow
    return raw.rstrip(b"\0").decode("ascii").strip()


def _values(ds: Dataset) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, tag in TEXT_TAGS.items():
        element = ds.get(tag)
        value = "" if element is None or element.value is None else element.value
        values[key] = str(value).strip()
    for key, tag in INT_TAGS.items():
        element = ds.get(tag)
        values[key] = _integer(None if element is None else element.value)
    missing = [key for key in REQUIRED if not values[key]]
    if missing:
        raise UnreadableDataset(f"missing {', '.join(missing)}")
    return values


def _integer(value: object) -> int | None:
    try:
        return int(str(value).strip()) if value not in (None, "") else None
    except ValueError:
        return None
