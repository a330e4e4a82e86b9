"""Sans-I/O: what a baseline JPEG's frame header (SOF0) and Adobe APP14 marker say."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.dicom.errors import CaptureError

_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length field
_SOF = {0xC0, *range(0xC1, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0)}


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
