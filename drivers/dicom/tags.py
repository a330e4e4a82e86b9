"""Read a DICOM file's identifying tags in one structural pass, without decoding pixel data."""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

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
CHARSET = Tag(0x0008, 0x0005)
REQUIRED = ("sop_class_uid", "sop_instance_uid", "study_uid", "series_uid")
WANTED = frozenset({CHARSET, *TEXT_TAGS.values(), *INT_TAGS.values()})
UNDEFINED = 0xFFFFFFFF
DEFER = 4096  # values larger than this are skipped by seeking, never read


class UnreadableDataset(Exception):
    """The file is not a complete DICOM dataset with the identifying UIDs; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_identity(path: Path) -> dict[str, Any]:
    """Return the transfer syntax and identifying tags of a Part 10 file; check it is complete."""
    try:
        with path.open("rb") as fp:
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
            return {"transfer_syntax": syntax, **_values(found)}
    except UnreadableDataset:
        raise
    except Exception as err:  # every parser failure means the same: cannot understand
        raise UnreadableDataset(f"unparseable: {type(err).__name__}") from err


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
