"""The seal of a spool file: what makes a received image durable and complete in one flush.

A C-STORE's data set is received into a file that already exists, empty, in a dated spool folder
that was fsynced after the file was created (`reservoir.py`). The File Meta ends with
(0002,0100) Private Information Creator UID = `CREATOR` and (0002,0102) Private Information, a
fixed-size value written as zeros first. Once the data set is complete the value is overwritten
with the seal — `MAGIC`, the file's size, a CRC-32 of every other byte of the file, the receive
time and the calling AE title — and the file is fdatasynced once: only then is the peer answered.
After a power cut a file whose seal matches its bytes is exactly what was acknowledged (or
complete and about to be), and carries everything its `dicom.stored` event needs; any other
state of a reserved file (empty, no seal, a seal its bytes do not match) was never acknowledged.
"""

from __future__ import annotations

import os
import struct
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

# 2.25: a UID made from a UUID (PS3.5 B.2), no registration needed; fixed for this format.
CREATOR = "2.25.180637421395781627420964716398237012583"
MAGIC = b"EAS1"
_VALUE = struct.Struct("<4sQIq16s")  # magic, file size, CRC-32, received (µs since epoch), AE
SEAL_SIZE = _VALUE.size  # 40 bytes: even, as an OB value must be
_OB_HEADER = struct.pack("<HH2sHL", 2, 0x0102, b"OB", 0, SEAL_SIZE)
_READ = 65_536  # the File Meta is read in one go; larger ones are not ours
CHUNK = 1 << 20


def meta_elements() -> bytes:
    """The two elements that end the File Meta of a sealed file, the seal still zeros."""
    creator = CREATOR.encode("ascii")
    if len(creator) % 2:
        creator += b"\0"
    head = struct.pack("<HH2sH", 2, 0x0100, b"UI", len(creator)) + creator
    return head + _OB_HEADER + bytes(SEAL_SIZE)


def seal_value(size: int, crc: int, received: datetime, calling_ae: str) -> bytes:
    """The seal of a file of `size` bytes whose other bytes have CRC-32 `crc`."""
    micros = round(received.timestamp() * 1_000_000)
    ae = calling_ae.encode("ascii", "replace")[:16].ljust(16, b" ")
    return _VALUE.pack(MAGIC, size, crc, micros, ae)


@dataclass(frozen=True, slots=True)
class Sealed:
    """A sealed file's facts: when it was received and from which AE."""

    received: datetime
    calling_ae: str
    size: int


State = Literal["reserved", "unsealed", "torn", "legacy"]


def is_reserved_name(path: Path) -> bool:
    """Whether `path` is named like a reserved file (`<UUIDv7>.dcm`); earlier files have UUIDv4s."""
    try:
        return uuid.UUID(path.stem).version == 7
    except ValueError:
        return False


def read_seal(path: Path) -> Sealed | State:
    """What a spool file is: Sealed (complete, as acknowledged), or why not: `reserved` (empty),
    `unsealed` (never finished), `torn` (sealed but its bytes differ: never acknowledged), or
    `legacy` (written before seals: complete by construction). OSError as is."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size == 0:
            return "reserved"
        head = file.read(_READ)
        where = seal_offset(head)
        if where is None:
            return "unsealed" if is_reserved_name(path) else "legacy"
        magic, sealed_size, crc, micros, ae = _VALUE.unpack_from(head, where)
        if magic != MAGIC:
            return "unsealed"
        if sealed_size != size:
            return "torn"
        actual = zlib.crc32(head[:where])
        actual = zlib.crc32(head[where + SEAL_SIZE :], actual)
        while chunk := file.read(CHUNK):
            actual = zlib.crc32(chunk, actual)
    if actual != crc:
        return "torn"
    received = datetime.fromtimestamp(micros / 1_000_000, UTC)
    return Sealed(received, ae.decode("ascii", "replace").rstrip(" "), size)


def seal_offset(head: bytes) -> int | None:
    """Where the seal's value is in a file starting with `head`, or None if it has none."""
    if len(head) < 144 or head[128:132] != b"DICM":
        return None
    tag, vr, length = struct.unpack_from("<L2sH", head, 132)
    if tag != 0x0000_0002 or vr != b"UL" or length != 4:
        return None
    end = 144 + int(struct.unpack_from("<L", head, 140)[0])
    group = end - 144
    if end > len(head) or group < len(_OB_HEADER) + SEAL_SIZE:
        return None
    where = end - SEAL_SIZE
    if head[where - len(_OB_HEADER) : where] != _OB_HEADER:
        return None
    return where
