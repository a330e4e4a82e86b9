"""Sans-I/O ESC/POS scanning: printer commands are skipped, text bytes kept, cuts reported.

Lengths follow the Epson ESC/POS reference. Control bytes (< 0x20) never occur inside a GB18030
multi-byte character, so the scanner works on raw bytes before decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

ESC, FS, GS, DLE = 0x1B, 0x1C, 0x1D, 0x10
LF, HT, FF, CR = 0x0A, 0x09, 0x0C, 0x0D


class Kind(Enum):
    """What a scanned token is."""

    TEXT = "text"
    CONTROL = "control"
    CUT = "cut"


# Parameter bytes after the command byte, for commands of fixed length.
_ESC_FIXED = {
    0x40: 0, 0x32: 0, 0x3C: 0, 0x4C: 0, 0x53: 0, 0x0C: 0,  # @ 2 < L S FF
    0x21: 1, 0x45: 1, 0x61: 1, 0x64: 1, 0x4A: 1, 0x33: 1, 0x20: 1, 0x2D: 1,  # ! E a d J 3 SP -
    0x47: 1, 0x4D: 1, 0x52: 1, 0x74: 1, 0x56: 1, 0x7B: 1, 0x72: 1, 0x3D: 1,  # G M R t V { r =
    0x3F: 1, 0x25: 1, 0x4B: 1, 0x65: 1, 0x55: 1, 0x54: 1, 0x2E: 1,  # ? % K e U T .
    0x24: 2, 0x5C: 2, 0x63: 2, 0x42: 2, 0x70: 3, 0x57: 8,  # $ \ c B p W
}  # fmt: skip
_ESC_CUTS = {0x69, 0x6D}  # ESC i, ESC m: the older full/partial cut
_FS_FIXED = {
    0x26: 0, 0x2E: 0, 0x21: 1, 0x2D: 1, 0x57: 1, 0x43: 1, 0x3F: 2, 0x53: 2, 0x70: 2, 0x32: 74,
}  # fmt: skip
_GS_FIXED = {
    0x21: 1, 0x42: 1, 0x48: 1, 0x66: 1, 0x68: 1, 0x77: 1, 0x61: 1, 0x62: 1, 0x49: 1, 0x72: 1,
    0x54: 1, 0x2F: 1, 0x3A: 0, 0x4C: 2, 0x57: 2, 0x24: 2, 0x5C: 2, 0x50: 2, 0x5E: 3,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Token:
    """One scanned piece: `data[start:end]`; TEXT tokens carry the bytes to keep in `text`."""

    kind: Kind
    end: int
    text: bytes = b""


def _fixed(end: int, size: int, kind: Kind = Kind.CONTROL) -> Token | None:
    return Token(kind, end) if end <= size else None


def _u16(data: bytes | bytearray, at: int) -> int:
    return data[at] | data[at + 1] << 8


def scan(data: bytes | bytearray, i: int) -> Token | None:
    """Scan the token at `i`; None if `data` ends inside it (more bytes are needed)."""
    size = len(data)
    byte = data[i]
    if byte >= 0x20 or byte in (LF, HT):
        j = i + 1
        while j < size and (data[j] >= 0x20 or data[j] in (LF, HT)):
            j += 1
        return Token(Kind.TEXT, j, bytes(data[i:j]))
    if byte == FF:
        return Token(Kind.TEXT, i + 1, b"\n")  # page-mode print: ends the line like LF
    if byte in (ESC, FS, GS, DLE):
        if i + 1 >= size:
            return None
        return {ESC: _esc, FS: _fs, GS: _gs, DLE: _dle}[byte](data, i, data[i + 1], size)
    return Token(Kind.CONTROL, i + 1)  # CR, CAN, NUL and other C0 bytes carry no text


def _esc(data: bytes | bytearray, i: int, cmd: int, size: int) -> Token | None:
    if cmd in _ESC_CUTS:
        return Token(Kind.CUT, i + 2)
    if cmd in _ESC_FIXED:
        return _fixed(i + 2 + _ESC_FIXED[cmd], size)
    if cmd == 0x2A:  # ESC * m nL nH d1..dk: 8-dot modes take 1 byte a column, 24-dot take 3
        if i + 5 > size:
            return None
        columns = _u16(data, i + 3)
        return _fixed(i + 5 + columns * (3 if data[i + 2] in (32, 33) else 1), size)
    if cmd == 0x44:  # ESC D n1..nk NUL: tab stops
        end = data.find(b"\x00", i + 2)
        return None if end < 0 else Token(Kind.CONTROL, end + 1)
    if cmd == 0x26:  # ESC & y c1 c2 [x d1..d(y*x)]...: user-defined characters
        if i + 5 > size:
            return None
        y, first, last = data[i + 2], data[i + 3], data[i + 4]
        j = i + 5
        for _ in range(max(last - first + 1, 0)):
            if j >= size:
                return None
            j += 1 + y * data[j]
        return _fixed(j, size)
    return _fixed(i + 2, size)  # unknown ESC x: the command byte only


def _fs(data: bytes | bytearray, i: int, cmd: int, size: int) -> Token | None:
    if cmd in _FS_FIXED:
        return _fixed(i + 2 + _FS_FIXED[cmd], size)
    if cmd == 0x71:  # FS q n [xL xH yL yH d1..dk]...: NV bit images
        if i + 3 > size:
            return None
        j = i + 3
        for _ in range(data[i + 2]):
            if j + 4 > size:
                return None
            j += 4 + _u16(data, j) * _u16(data, j + 2) * 8
        return _fixed(j, size)
    return _fixed(i + 2, size)


def _gs(data: bytes | bytearray, i: int, cmd: int, size: int) -> Token | None:
    if cmd == 0x56:  # GS V m [n]: m 0/1/48/49 cut now, 65/66/97/98/103/104 feed n then cut
        if i + 3 > size:
            return None
        extra = 0 if data[i + 2] in (0, 1, 48, 49) else 1
        return _fixed(i + 3 + extra, size, Kind.CUT)
    if cmd in _GS_FIXED:
        return _fixed(i + 2 + _GS_FIXED[cmd], size)
    if cmd == 0x76:  # GS v 0 m xL xH yL yH d1..dk: raster image, k = x bytes × y dots
        if i + 8 > size:
            return None
        return _fixed(i + 8 + _u16(data, i + 4) * _u16(data, i + 6), size)
    if cmd == 0x2A:  # GS * x y d1..d(x*y*8): downloaded bit image
        if i + 4 > size:
            return None
        return _fixed(i + 4 + data[i + 2] * data[i + 3] * 8, size)
    if cmd == 0x28:  # GS ( fn pL pH d1..dk
        if i + 5 > size:
            return None
        return _fixed(i + 5 + _u16(data, i + 3), size)
    if cmd == 0x38:  # GS 8 L p1 p2 p3 p4 d1..dk: large graphics data
        if i + 7 > size:
            return None
        length = int.from_bytes(bytes(data[i + 3 : i + 7]), "little")
        return _fixed(i + 7 + length, size)
    if cmd == 0x6B:  # GS k m ...: barcode, NUL-terminated (m 0-6) or with a length (m 65-79)
        if i + 3 > size:
            return None
        if data[i + 2] <= 6:
            end = data.find(b"\x00", i + 3)
            return None if end < 0 else Token(Kind.CONTROL, end + 1)
        if i + 4 > size:
            return None
        return _fixed(i + 4 + data[i + 3], size)
    return _fixed(i + 2, size)


def _dle(data: bytes | bytearray, i: int, cmd: int, size: int) -> Token | None:
    if cmd == 0x14:  # DLE DC4 fn m t
        return _fixed(i + 5, size)
    if cmd in (0x04, 0x05):  # DLE EOT n, DLE ENQ n: real-time status requests
        return _fixed(i + 3, size)
    return Token(Kind.CONTROL, i + 1)  # a lone DLE is no command


@dataclass(frozen=True, slots=True)
class Stripped:
    """A receipt's text bytes with every command removed; `truncated` if it ends inside one."""

    text: bytes
    cuts: int
    truncated: bool


def strip(data: bytes) -> Stripped:
    """Remove ESC/POS commands (and raster data) from `data`, keeping text, LF and HT."""
    out = bytearray()
    cuts = 0
    i = 0
    while i < len(data):
        token = scan(data, i)
        if token is None:
            return Stripped(bytes(out), cuts, truncated=True)
        if token.kind is Kind.TEXT:
            out += token.text
        elif token.kind is Kind.CUT:
            cuts += 1
        i = token.end
    return Stripped(bytes(out), cuts, truncated=False)
