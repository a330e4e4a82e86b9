"""Chafon-style UHF readers (UHFReader18 protocol family): binary `Len Adr Cmd Status Data CRC`.

Frame: Len (bytes after itself, 5–255), Adr, Cmd, Status, Data, CRC-16 LSB first over Len..Data
(poly 0x8408 reflected, init 0xFFFF, no final XOR: CRC-16/MCRF4XX). Frames may share a read or
span reads. Only inventory answers (Cmd 0x01) carry tags. Assumed layout of their Data, as in
the UHFReader18 manual: Num (tag count), then per tag EPC-len (bytes) followed by the EPC.
Status 0x01–0x04 carry tags (inventory done / timed out / more frames follow / buffer full);
0xFB means no tag in the field. Other commands' answers are ignored.
"""

from __future__ import annotations

import binascii

from drivers.rfid.framing import FrameParser
from drivers.rfid.tags import Read, hex_read

CMD_INVENTORY = 0x01
STATUS_WITH_TAGS = frozenset({0x01, 0x02, 0x03, 0x04})
STATUS_NO_TAG = 0xFB
MIN_LEN = 5  # Adr Cmd Status CRC-lo CRC-hi


_REFLECT = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def crc16(data: bytes) -> int:
    """Return the CRC-16/MCRF4XX of `data` (poly 0x8408 reflected, init 0xFFFF, no final XOR)."""
    # The reflected CRC is the unreflected CCITT one (binascii, in C) over bit-reversed bytes,
    # bit-reversed: a resynchronising parser checks a candidate frame per garbage byte.
    unreflected = binascii.crc_hqx(data.translate(_REFLECT), 0xFFFF)
    return int(f"{unreflected:016b}"[::-1], 2)


def encode(adr: int, cmd: int, status: int | None, data: bytes = b"") -> bytes:
    """Return a frame with its Len and CRC (status None: a host command, which has none)."""
    body = bytes([adr, cmd]) + (bytes([status]) if status is not None else b"") + data
    framed = bytes([len(body) + 2]) + body
    return framed + crc16(framed).to_bytes(2, "little")


def inventory_answer(epcs: list[bytes], adr: int = 0x00, status: int = 0x01) -> bytes:
    """Return the inventory answer frame a reader sends for these EPCs (tests, simulators)."""
    data = bytes([len(epcs)]) + b"".join(bytes([len(epc)]) + epc for epc in epcs)
    return encode(adr, CMD_INVENTORY, status, data)


class ChafonParser(FrameParser):
    """Parses Chafon answer frames; after a corrupt frame it resynchronises byte by byte."""

    protocol = "chafon"

    def __init__(self, source: str = "") -> None:
        super().__init__(source)
        self._resyncing = False  # counting one error per corrupt stretch, not per offset tried
        self._scanned = 0  # candidates ending within this many bytes were already found bad

    def reset(self) -> None:
        """Forget a partial frame."""
        super().reset()
        self._resyncing = False
        self._scanned = 0

    def feed(self, data: bytes) -> list[Read]:
        """Add `data`; return the tags of every complete, valid inventory answer."""
        buffer = self._buffer
        buffer += data
        reads: list[Read] = []
        while buffer:
            length = buffer[0]
            if length < MIN_LEN:
                self._skip("bad_length")
                continue
            if len(buffer) < length + 1:
                later = self._next_valid_frame()
                if later is None:
                    break  # wait for the rest of this frame
                # A long "frame" still incomplete while a valid one follows: its Len was junk.
                self._skip("bad_length", later)
                continue
            frame = bytes(buffer[: length + 1])
            if crc16(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
                self._skip("bad_crc")
                continue
            self._drop(length + 1)
            self._resyncing = False
            reads.extend(self._decode(frame))
        return reads

    def _skip(self, reason: str, count: int = 1) -> None:
        if not self._resyncing:
            self._reject(reason, count)
        self._resyncing = True
        self._drop(count)

    def _drop(self, count: int) -> None:
        del self._buffer[:count]
        self._scanned = max(0, self._scanned - count)

    def _next_valid_frame(self) -> int | None:
        """The offset of the first complete frame with a good CRC after offset 0, if any."""
        buffer = self._buffer
        for start in range(1, len(buffer) - MIN_LEN + 1):
            end = start + buffer[start] + 1
            # Each candidate is checked once, when its last byte arrives: rechecking them all
            # on every read would make a byte-by-byte line quadratic.
            if buffer[start] >= MIN_LEN and self._scanned < end <= len(buffer):
                frame = bytes(buffer[start:end])
                if crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little"):
                    return start
        self._scanned = len(buffer)
        return None

    def _decode(self, frame: bytes) -> list[Read]:
        cmd, status, data = frame[2], frame[3], frame[4:-2]
        if cmd != CMD_INVENTORY or status == STATUS_NO_TAG or status not in STATUS_WITH_TAGS:
            return []
        if not data:
            self._reject("bad_inventory", len(frame))
            return []
        reads: list[Read] = []
        position = 1
        for _ in range(data[0]):
            if position >= len(data):
                break
            size = data[position]
            epc = data[position + 1 : position + 1 + size]
            if size == 0 or len(epc) != size:
                break
            reads.append(hex_read(epc))
            position += 1 + size
        else:
            if position == len(data):
                return reads
        self._reject("bad_inventory", len(frame))
        return []
