"""Sans-I/O: a captured JPEG and its JSON sidecar → a DICOM file (VL Endoscopic or SC), no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from io import BytesIO
from typing import Any, Literal

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

from drivers.dicom.errors import CaptureError
from drivers.dicom.jpeg import jpeg_info
from drivers.dicom.sidecar import UID_PATTERN, Sidecar

VL_ENDOSCOPIC = UID("1.2.840.10008.5.1.4.1.1.77.1.1")
SECONDARY_CAPTURE = UID("1.2.840.10008.5.1.4.1.1.7")


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
    return len(value) <= 32 and value.endswith(".") and bool(UID_PATTERN.match(value[:-1]))


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
