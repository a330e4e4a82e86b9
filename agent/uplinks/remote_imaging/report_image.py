"""A report's JPEG image as DICOM Secondary Capture in the exam's study (seed 003 §3.2.3.1
`reportImage` with `sopInstanceUID`): the JPEG bytes encapsulated as they are (JPEG Baseline,
no decoding), the study's patient, study and accession tags, UIDs the push already named."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, JPEGBaseline8Bit, SecondaryCaptureImageStorage

SOF_BASELINE = (0xC0, 0xC1)  # the frames JPEG Baseline (Process 1) / extended 8-bit carry


def jpeg_shape(data: bytes) -> tuple[int, int, int]:
    """(rows, columns, components) from a baseline JPEG's SOF; ValueError if it has none."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG file")
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise ValueError("not a JPEG file: broken marker")
        marker = data[at + 1]
        length = struct.unpack(">H", data[at + 2 : at + 4])[0]
        if marker in SOF_BASELINE and at + 10 <= len(data):
            precision, rows, columns, components = struct.unpack(">BHHB", data[at + 4 : at + 10])
            if precision != 8:
                raise ValueError(f"a {precision}-bit JPEG is not JPEG Baseline")
            return rows, columns, components
        if 0xC2 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            raise ValueError("a progressive or lossless JPEG is not JPEG Baseline")
        at += 2 + length
    raise ValueError("not a JPEG file: no frame header")


def secondary_capture(data: bytes, image: Mapping[str, Any]) -> Dataset:
    """The DICOM data set of one report image message (`path` read by the caller)."""
    rows, columns, components = jpeg_shape(data)
    expect = image.get("expect") or {}
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = UID(str(image["sop_uid"]))
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, str(image["sop_uid"])
    ds.PatientID = str(expect.get("PatientID") or "")
    ds.StudyInstanceUID = str(expect.get("StudyInstanceUID") or "")
    ds.AccessionNumber = str(expect.get("AccessionNumber") or "")
    ds.SeriesInstanceUID = str(image["series_uid"])
    ds.Modality, ds.ConversionType, ds.SeriesNumber = "OT", "WSD", 999
    ds.SeriesDescription = "Report images"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, components
    ds.PhotometricInterpretation = "YBR_FULL_422" if components == 3 else "MONOCHROME2"
    if components == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.LossyImageCompression = "01"
    ds.PixelData = encapsulate([data])
    ds["PixelData"].VR = "OB"
    return ds
