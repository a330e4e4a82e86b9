"""A report's image as DICOM Secondary Capture in the exam's study (seed 003 §3.2.3.1
`reportImage` with `sopInstanceUID`): a JPEG's bytes encapsulated as they are (JPEG Baseline,
no decoding); a PNG or BMP decoded by Pillow into native 8-bit pixels (Explicit VR Little Endian,
lossless); the study's patient, study and accession tags, UIDs the push already named."""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Mapping
from typing import Any

from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEGBaseline8Bit, SecondaryCaptureImageStorage

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


GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
MAX_PIXELS = 64 * 1024 * 1024  # a report image larger than this is no report image
UNDECODABLE = (OSError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning)


def secondary_capture(data: bytes, image: Mapping[str, Any]) -> Dataset:
    """The DICOM data set of one report image message (`path` read by the caller): JPEG as it
    is, PNG or BMP decoded; ValueError for a file that is none of them or cannot be decoded."""
    if data[:2] == b"\xff\xd8":
        rows, columns, components = jpeg_shape(data)
        ds = _frame(image, JPEGBaseline8Bit)
        ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, components
        ds.PhotometricInterpretation = "YBR_FULL_422" if components == 3 else "MONOCHROME2"
        if components == 3:
            ds.PlanarConfiguration = 0
        ds.LossyImageCompression = "01"
        ds.PixelData = encapsulate([data])
        ds["PixelData"].VR = "OB"
        return ds
    grey, (columns, rows), pixels = _decoded(data)
    ds = _frame(image, ExplicitVRLittleEndian)
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, 1 if grey else 3
    ds.PhotometricInterpretation = "MONOCHROME2" if grey else "RGB"
    if not grey:
        ds.PlanarConfiguration = 0
    ds.LossyImageCompression = "00"
    ds.PixelData = pixels + b"\x00" * (len(pixels) % 2)  # an even length, as DICOM wants
    ds["PixelData"].VR = "OB"
    return ds


def _decoded(data: bytes) -> tuple[bool, tuple[int, int], bytes]:
    """(grey, (width, height), 8-bit pixels) of a PNG or BMP; ValueError otherwise."""
    if not (data.startswith(b"\x89PNG\r\n\x1a\n") or data[:2] == b"BM"):
        raise ValueError("not a JPEG, PNG or BMP file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=("PNG", "BMP")) as opened:
                if opened.width * opened.height > MAX_PIXELS:
                    raise ValueError(f"{opened.width}x{opened.height} pixels: too large")
                grey = opened.mode in GREY_MODES
                if opened.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                    picture = opened.point(lambda v: v / 256).convert("L")
                else:
                    picture = opened.convert("L" if grey else "RGB")
                return grey, picture.size, picture.tobytes()
    except (
        OSError,
        SyntaxError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as err:
        raise ValueError(f"cannot decode the image ({type(err).__name__})") from err


def _frame(image: Mapping[str, Any], syntax: UID) -> Dataset:
    """The Secondary Capture's attributes but the pixels."""
    expect = image.get("expect") or {}
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = UID(str(image["sop_uid"]))
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, str(image["sop_uid"])
    ds.PatientID = str(expect.get("PatientID") or "")
    ds.StudyInstanceUID = str(expect.get("StudyInstanceUID") or "")
    ds.AccessionNumber = str(expect.get("AccessionNumber") or "")
    ds.SeriesInstanceUID = str(image["series_uid"])
    ds.Modality, ds.ConversionType, ds.SeriesNumber = "OT", "WSD", 999
    ds.SeriesDescription = "Report images"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    return ds
