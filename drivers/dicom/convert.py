"""Sans-I/O: a captured JPEG and its JSON sidecar → a DICOM file (VL Endoscopic or SC), no I/O."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from io import BytesIO
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    PYDICOM_ROOT_UID,
    UID,
    JPEGBaseline8Bit,
    generate_uid,
)

from agent.errors import AgentError

VL_ENDOSCOPIC = UID("1.2.840.10008.5.1.4.1.1.77.1.1")
SECONDARY_CAPTURE = UID("1.2.840.10008.5.1.4.1.1.7")
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length field
_SOF = {0xC0, *range(0xC1, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0)}
_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")
_TIME = re.compile(r"^(\d{2}):?(\d{2})(?::?(\d{2})(\.\d{1,6})?)?$")
_UID = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))+$")
_CS = re.compile(r"^[A-Z0-9_ ]*$")


class CaptureError(AgentError):
    """A capture that cannot be converted; `reason` is a short bounded code, `detail` says more."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class JpegInfo:
    """What the SOF and APP14 markers say about a baseline JPEG."""

    rows: int
    columns: int
    components: int
    photometric: str


def jpeg_info(data: bytes) -> JpegInfo:
    """Read a baseline JPEG's frame header; CaptureError unless it is a complete baseline JPEG."""
    if data[:2] != b"\xff\xd8":
        raise CaptureError("not_jpeg", "the image does not start with a JPEG SOI marker")
    if data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        raise CaptureError("truncated_jpeg", "the image does not end with a JPEG EOI marker")
    pos, adobe_transform, frame = 2, None, None
    while frame is None:
        while pos < len(data) and data[pos] == 0xFF and data[pos + 1 : pos + 2] == b"\xff":
            pos += 1  # fill bytes before a marker
        if pos + 4 > len(data) or data[pos] != 0xFF:
            raise CaptureError("bad_jpeg", f"no marker at offset {pos}")
        marker = data[pos + 1]
        if marker in _STANDALONE:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        segment = data[pos + 4 : pos + 2 + length]
        if length < 2 or len(segment) != length - 2:
            raise CaptureError("bad_jpeg", f"segment at offset {pos} runs past the end")
        if marker == 0xEE and segment[:5] == b"Adobe" and len(segment) >= 12:
            adobe_transform = segment[11]
        elif marker in _SOF:
            if marker != 0xC0:
                raise CaptureError("unsupported_jpeg", f"SOF{marker - 0xC0}: only baseline (SOF0)")
            frame = segment
        elif marker in (0xDA, 0xD9):
            raise CaptureError("bad_jpeg", "no frame header before the scan")
        pos += 2 + length
    if len(frame) < 6:
        raise CaptureError("bad_jpeg", "short frame header")
    precision, rows, columns, count = frame[0], *_pair(frame[1:5]), frame[5]
    if precision != 8 or rows == 0 or columns == 0 or len(frame) < 6 + 3 * count:
        raise CaptureError("unsupported_jpeg", f"{precision}-bit {columns}x{rows}")
    sampling = [frame[7 + 3 * i] for i in range(count)]
    if count == 1:
        photometric = "MONOCHROME2"
    elif count == 3 and adobe_transform == 0:
        photometric = "RGB"  # Adobe APP14 says the components are not YCbCr
    elif count == 3:
        # PS3.5 §8.2.1: subsampled chroma is YBR_FULL_422, full-resolution chroma YBR_FULL.
        photometric = "YBR_FULL_422" if len(set(sampling)) > 1 else "YBR_FULL"
    else:
        raise CaptureError("unsupported_jpeg", f"{count} components")
    return JpegInfo(rows, columns, count, photometric)


def _pair(raw: bytes) -> tuple[int, int]:
    """Two big-endian 16-bit numbers."""
    return int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:4], "big")


_PLAIN = r"^[^\\\x00-\x1f]*$"  # one value: no backslash (value separator), no control characters
Short = Annotated[str, Field(max_length=16, pattern=_PLAIN)]  # SH
Long = Annotated[str, Field(max_length=64, pattern=_PLAIN)]  # LO
Name = Annotated[str, Field(max_length=192, pattern=_PLAIN)]  # PN: three component groups


class Sidecar(BaseModel):
    """The JSON file beside a captured image (same basename, `.json`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    patient_id: Annotated[str, Field(min_length=1, max_length=64, pattern=_PLAIN)]
    patient_name: Name = ""  # DICOM PN, e.g. "Wang^Wei=王^伟" or just "王伟"
    accession: Short = ""
    study_date: str
    study_time: str = ""
    modality: Annotated[str, Field(min_length=1, max_length=16)]
    study_uid: Annotated[str, Field(max_length=64)] = ""
    study_description: Long = ""
    series_description: Long = ""
    series_number: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    request_form: bool = False  # a scanned paper request form: series number 0 (seed 003)
    session: Long = ""  # images of one capture session share a series
    sex: Literal["M", "F", "O", ""] = ""
    birth_date: str = ""
    image_number: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    body_part: Short = ""
    referring_physician: Long = ""

    @field_validator("study_date", "birth_date")
    @classmethod
    def _date(cls, value: str) -> str:
        if not value:
            return value
        if (match := _DATE.match(value)) is None:
            raise ValueError("expected YYYYMMDD or YYYY-MM-DD")
        datetime.strptime("".join(match.groups()), "%Y%m%d")  # a calendar check
        return "".join(match.groups())

    @field_validator("study_time")
    @classmethod
    def _time(cls, value: str) -> str:
        if not value:
            return value
        if (match := _TIME.match(value)) is None:
            raise ValueError("expected HHMMSS or HH:MM:SS")
        return "".join(part or "" for part in match.groups())

    @field_validator("modality", "body_part")
    @classmethod
    def _code(cls, value: str) -> str:
        if not _CS.match(value.upper()):
            raise ValueError("a DICOM code string: letters, digits, underscore, space")
        return value.upper()

    @field_validator("study_uid")
    @classmethod
    def _uid(cls, value: str) -> str:
        if value and not _UID.match(value):
            raise ValueError("not a DICOM UID")
        return value

    @field_validator("sex", mode="before")
    @classmethod
    def _sex(cls, value: object) -> object:
        return {"男": "M", "女": "F"}.get(value, value) if isinstance(value, str) else value


def parse_sidecar(raw: bytes, *, encoding: str = "utf-8", ignore_unknown: bool = False) -> Sidecar:
    """The validated sidecar; CaptureError("bad_sidecar") naming the first problem."""
    try:
        document = json.loads(raw.decode("utf-8-sig" if encoding == "utf-8" else encoding))
    except (UnicodeDecodeError, ValueError) as err:
        raise CaptureError("bad_sidecar", f"not JSON: {err}") from err
    if not isinstance(document, dict):
        raise CaptureError("bad_sidecar", "not a JSON object")
    if ignore_unknown:
        document = {k: v for k, v in document.items() if k in Sidecar.model_fields}
    try:
        return Sidecar.model_validate(document)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CaptureError("bad_sidecar", f"{where}: {first['msg']}") from err


@dataclass(frozen=True, slots=True)
class StudyRef:
    """The indexed study an accession already belongs to."""

    study_uid: str
    patient_id: str


@dataclass(frozen=True, slots=True)
class Settings:
    """Per-source constants written into every converted object."""

    uid_root: str | None = None  # e.g. "1.2.156.112605.9."; default: pydicom's root
    manufacturer: str = ""
    institution: str = ""
    station: str = ""
    burned_in_annotation: Literal["YES", "NO"] = "YES"


def is_uid_root(value: str) -> bool:
    """Whether `value` can prefix generated UIDs (digits and dots, a final dot, ≤ 32 chars)."""
    return len(value) <= 32 and value.endswith(".") and bool(_UID.match(value[:-1]))


def uid(settings: Settings, *parts: str) -> UID:
    """A deterministic UID: the same parts give the same UID under the same root."""
    return generate_uid(
        prefix=settings.uid_root or PYDICOM_ROOT_UID, entropy_srcs=["edge-agent", *parts]
    )


def study_uid_for(sidecar: Sidecar, study: StudyRef | None, settings: Settings) -> str:
    """The study a capture joins: given, indexed by accession, or derived from the exam."""
    if sidecar.study_uid:
        return sidecar.study_uid
    if study is not None:
        return study.study_uid
    key = sidecar.accession or f"{sidecar.study_date}|{sidecar.modality}"
    return uid(settings, "study", sidecar.patient_id, key)


def build(
    jpeg: bytes,
    sidecar: Sidecar,
    *,
    image_sha256: str,
    study: StudyRef | None,
    captured_at: datetime,
    tz: tzinfo,
    settings: Settings,
) -> Dataset:
    """The DICOM dataset (with file meta) of a capture; CaptureError if it cannot be made."""
    info = jpeg_info(jpeg)
    if study is not None and study.patient_id != sidecar.patient_id:
        raise CaptureError("patient_mismatch", "the accession's study belongs to another patient")
    form = sidecar.request_form
    endoscopic = sidecar.modality == "ES" and not form
    study_uid = study_uid_for(sidecar, study, settings)
    session = sidecar.session or sidecar.study_date
    local = captured_at.astimezone(tz)
    date, time = local.strftime("%Y%m%d"), local.strftime("%H%M%S")
    series_number = 1 if sidecar.series_number is None else sidecar.series_number
    values: dict[str, Any] = {
        "SpecificCharacterSet": "ISO_IR 192",
        "ImageType": ["ORIGINAL", "PRIMARY"] if endoscopic else ["DERIVED", "SECONDARY"],
        "SOPClassUID": VL_ENDOSCOPIC if endoscopic else SECONDARY_CAPTURE,
        "SOPInstanceUID": uid(settings, "sop", image_sha256),
        "StudyDate": sidecar.study_date,
        "ContentDate": date,
        "StudyTime": sidecar.study_time,
        "ContentTime": time,
        "AccessionNumber": sidecar.accession,
        "Modality": sidecar.modality,
        "Manufacturer": settings.manufacturer,
        "ReferringPhysicianName": sidecar.referring_physician,
        "StudyDescription": sidecar.study_description,
        "SeriesDescription": sidecar.series_description or ("申请单" if form else ""),
        "PatientName": sidecar.patient_name,
        "PatientID": sidecar.patient_id,
        "PatientBirthDate": sidecar.birth_date,
        "PatientSex": sidecar.sex,
        "StudyInstanceUID": study_uid,
        "SeriesInstanceUID": uid(
            settings, "series", study_uid, sidecar.modality, session, str(form)
        ),
        "StudyID": "",
        "SeriesNumber": 0 if form else series_number,  # seed 003: request forms are series 0
        "InstanceNumber": sidecar.image_number,
        "PatientOrientation": "",
        "SamplesPerPixel": info.components,
        "PhotometricInterpretation": info.photometric,
        "Rows": info.rows,
        "Columns": info.columns,
        "BitsAllocated": 8,
        "BitsStored": 8,
        "HighBit": 7,
        "PixelRepresentation": 0,
        "BurnedInAnnotation": settings.burned_in_annotation,
        "LossyImageCompression": "01",
        "LossyImageCompressionMethod": "ISO_10918_1",
    }
    optional = {
        "InstitutionName": settings.institution,
        "StationName": settings.station,
        "BodyPartExamined": sidecar.body_part,
    }
    values.update({keyword: value for keyword, value in optional.items() if value})
    if info.components > 1:
        values["PlanarConfiguration"] = 0
    if endoscopic:
        values["AcquisitionDateTime"] = date + time
        values["AcquisitionContextSequence"] = []
    else:
        values["ConversionType"] = "SD" if form else "WSD"
        values["DateOfSecondaryCapture"] = date
        values["TimeOfSecondaryCapture"] = time
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.PixelData = encapsulate([jpeg])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return ds


def encode(ds: Dataset) -> bytes:
    """The DICOM file (preamble, file meta, dataset) of `ds`."""
    out = BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()
