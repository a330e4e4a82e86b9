"""Test DICOM files written by pydicom: small studies, one JPEG Baseline image, big CT slices."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage, "OT": SecondaryCaptureImageStorage}

# An 8×8 MONOCHROME2 JPEG Baseline frame (made once with dcmcjpeg +eb from a gradient).
JPEG_8X8 = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb0043000302020302020303030304030304050805050404"
    "050a070706080c0a0c0c0b0a0b0b0d0e12100d0e110e0b0b1016101113141515150c0f171816141812141514"
    "ffc0000b080008000801011100ffc40014000100000000000000000000000000000003ffc400191000010500"
    "0000000000000000000000000006092532a3ffda0008010100003f0024d36dd22f33ffffd9"
)


def make_dataset(
    *,
    modality: str,
    patient_id: str,
    study_uid: str,
    series_uid: str,
    series_number: int,
    instance_number: int,
    accession: str = "ACC0001",
    rows: int = 16,
    columns: int = 16,
) -> Dataset:
    """A 16-bit image with the identifying tags set and `rows × columns` of pixel data."""
    ds = Dataset()
    ds.SOPClassUID = SOP_CLASSES[modality]
    ds.SOPInstanceUID = generate_uid()
    ds.StudyDate = "20260105"
    ds.StudyTime = "093000"
    ds.AccessionNumber = accession
    ds.Modality = modality
    ds.ReferringPhysicianName = "Ref^Doctor"
    ds.StudyDescription = f"{modality} study"
    ds.SeriesDescription = f"{modality} series {series_number}"
    ds.PatientName = "Test^Patient"
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.BodyPartExamined = "CHEST"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(256)) * (rows * columns * 2 // 256) + bytes(rows * columns * 2 % 256)
    return ds


def save(ds: Dataset, path: Path, transfer_syntax: UID = ExplicitVRLittleEndian) -> Path:
    """Write `ds` as a DICOM file (preamble, meta) in `transfer_syntax` (pixel data as given)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(
        path,
        enforce_file_format=True,
        implicit_vr=transfer_syntax.is_implicit_VR,
        little_endian=transfer_syntax.is_little_endian,
    )
    return path


def make_study(
    directory: Path,
    patient_id: str,
    study_uid: str | None = None,
    series: Sequence[tuple[str, int]] = (("CT", 3), ("MR", 2)),
    accession: str = "ACC0001",
) -> list[Path]:
    """Write one study; series alternate Explicit / Implicit VR Little Endian; return the files."""
    study_uid = study_uid or generate_uid()
    paths = []
    for number, (modality, count) in enumerate(series, start=1):
        series_uid = generate_uid()
        syntax = ExplicitVRLittleEndian if number % 2 else ImplicitVRLittleEndian
        for instance in range(1, count + 1):
            ds = make_dataset(
                modality=modality,
                patient_id=patient_id,
                study_uid=study_uid,
                series_uid=series_uid,
                series_number=number,
                instance_number=instance,
                accession=accession,
            )
            paths.append(save(ds, directory / f"s{number}" / f"i{instance}.dcm", syntax))
    return paths


def make_jpeg_baseline(
    path: Path, patient_id: str, study_uid: str, accession: str = "ACC0001"
) -> Path:
    """Write an 8×8 secondary capture encoded as JPEG Baseline (encapsulated pixel data)."""
    ds = make_dataset(
        modality="OT",
        patient_id=patient_id,
        study_uid=study_uid,
        series_uid=generate_uid(),
        series_number=9,
        instance_number=1,
        accession=accession,
        rows=8,
        columns=8,
    )
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = encapsulate([JPEG_8X8])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    return save(ds, path, JPEGBaseline8Bit)


def make_ct_slices(
    directory: Path, count: int, rows: int = 512, columns: int = 512, prefix: str = "ct"
) -> list[Path]:
    """Write `count` CT slices of one series, `rows × columns` 16-bit, Explicit VR LE."""
    study_uid, series_uid = generate_uid(), generate_uid()
    paths = []
    for n in range(1, count + 1):
        ds = make_dataset(
            modality="CT",
            patient_id="BENCH",
            study_uid=study_uid,
            series_uid=series_uid,
            series_number=1,
            instance_number=n,
            rows=rows,
            columns=columns,
        )
        paths.append(save(ds, directory / f"{prefix}{n:05d}.dcm"))
    return paths


def by_storescu_options(files: Sequence[Path]) -> list[tuple[list[str], list[Path]]]:
    """The files grouped with the storescu options that send them in their own syntax.

    storescu proposes [Explicit VR LE] and [Explicit VR BE, Implicit VR LE] by default; an
    acceptor honouring the sender's order takes Explicit BE in the second, so Implicit VR files
    would be converted: they are sent proposing Implicit VR LE only (`-xi`).
    """
    explicit: list[Path] = []
    implicit: list[Path] = []
    for path in files:
        syntax = dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        (implicit if syntax.is_implicit_VR else explicit).append(path)
    return [(options, group) for options, group in (([], explicit), (["-xi"], implicit)) if group]
