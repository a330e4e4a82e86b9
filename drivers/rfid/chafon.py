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
import heapq

from agent.vocabulary.tags import Read, hex_read
from drivers.rfid.framing import FrameParser

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
        self._candidates = _Candidates()

    def reset(self) -> None:
        """Forget a partial frame."""
        super().reset()
        self._resyncing = False
        self._candidates = _Candidates()

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
                later = self._candidates.first_valid(buffer)
                if later is None:
                    break  # wait for the rest of this frame
                # A long "frame" still incomplete while a valid one follows: its Len was junk.
                self._skip("bad_length", later)
                continue
            if not _valid(buffer, 0, length + 1):
                self._skip("bad_crc")
                continue
            reads.extend(self._decode(bytes(buffer[: length + 1])))
            self._drop(length + 1)
            self._resyncing = False
        return reads

    def _skip(self, reason: str, count: int = 1) -> None:
        if not self._resyncing:
            self._reject(reason, count)
        self._resyncing = True
        self._drop(count)

    def _drop(self, count: int) -> None:
        del self._buffer[:count]
        self._candidates.base += count

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


def _valid(buffer: bytearray, start: int, end: int) -> bool:
    """True if `buffer[start:end]` is a frame whose CRC matches."""
    frame = bytes(buffer[start:end])
    return crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


class _Candidates:
    """Frames that may start after the buffer's head, each checked once, when its end arrives.

    Checking every candidate again on every read would make a line read byte by byte cost ~250
    checks per byte. Offsets are absolute (bytes since the parser started).
    """

    def __init__(self) -> None:
        self.base = 0  # the absolute offset of the buffer's first byte
        self._registered = 0  # every start below this is filed under its end
        self._checked = 0  # every candidate ending at or below this was checked
        self._by_end: dict[int, list[int]] = {}
        self._valid: list[int] = []  # a heap: starts of complete frames with a good CRC

    def first_valid(self, buffer: bytearray) -> int | None:
        """The offset of the first complete, valid frame after `buffer[0]`, if any."""
        base, top = self.base, self.base + len(buffer)
        for start in range(max(self._registered, base + 1), top):
            length = buffer[start - base]
            if length >= MIN_LEN:
                self._by_end.setdefault(start + length + 1, []).append(start)
        self._registered = top
        for end in range(self._checked + 1, top + 1):
            for start in self._by_end.pop(end, ()):
                if start > base and _valid(buffer, start - base, end - base):
                    heapq.heappush(self._valid, start)
        self._checked = top
        while self._valid and self._valid[0] <= base:
            heapq.heappop(self._valid)
        return self._valid[0] - base if self._valid else None
