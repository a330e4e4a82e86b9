"""125 kHz EM4100 readers of the RDM6300 family: STX, 10 hex (version + tag), 2 hex XOR, ETX.

Frame: `02`, 10 ASCII hex digits (1 version/customer byte + 4 tag bytes), 2 ASCII hex digits of
the XOR of those five bytes, `03` — 14 bytes. The read carries all 40 ID bits.
"""

from __future__ import annotations

from functools import reduce
from operator import xor

from agent.vocabulary.tags import Read, hex_read
from drivers.rfid.framing import FrameParser

STX, ETX = 0x02, 0x03
FRAME_SIZE = 14
_HEX_DIGITS = frozenset(b"0123456789ABCDEFabcdef")


def encode(id_bytes: bytes) -> bytes:
    """Return the frame a reader sends for the 5 ID bytes (for tests and simulators)."""
    checksum = reduce(xor, id_bytes, 0)
    return bytes([STX]) + (id_bytes.hex().upper() + f"{checksum:02X}").encode() + bytes([ETX])


class Rdm6300Parser(FrameParser):
    """Parses RDM6300 frames; resynchronises on the next STX after garbage or a bad frame."""

    protocol = "rdm6300"

    def __init__(self, source: str = "") -> None:
        super().__init__(source)
        self._in_garbage = False

    def reset(self) -> None:
        """Forget a partial frame."""
        super().reset()
        self._in_garbage = False

    def feed(self, data: bytes) -> list[Read]:
        """Add `data`; return the reads of every complete, valid frame."""
        buffer = self._buffer
        buffer += data
        reads: list[Read] = []
        while buffer:
            start = buffer.find(STX)
            if start != 0:
                end = len(buffer) if start < 0 else start
                if not self._in_garbage:  # one count per run, however the run was split
                    self._reject("garbage", end)
                self._in_garbage = start < 0
                del buffer[:end]
                continue
            self._in_garbage = False
            # A second STX before the frame is complete: the first frame was cut short.
            restart = buffer.find(STX, 1, FRAME_SIZE)
            if restart > 0 and (len(buffer) < FRAME_SIZE or buffer[FRAME_SIZE - 1] != ETX):
                self._reject("truncated", restart)
                del buffer[:restart]
                continue
            if len(buffer) < FRAME_SIZE:
                break
            frame = bytes(buffer[:FRAME_SIZE])
            read = self._decode(frame)
            # A bad terminator means we may be mid-frame: only skip this STX, not the 14 bytes.
            del buffer[: FRAME_SIZE if frame[-1] == ETX else 1]
            if read is not None:
                reads.append(read)
        return reads

    def _decode(self, frame: bytes) -> Read | None:
        body = frame[1:-1]
        if frame[-1] != ETX:
            self._reject("bad_framing", FRAME_SIZE)
            return None
        if not set(body) <= _HEX_DIGITS:
            self._reject("bad_hex", FRAME_SIZE)
            return None
        id_bytes = bytes.fromhex(body[:10].decode())
        if reduce(xor, id_bytes, 0) != int(body[10:], 16):
            self._reject("bad_checksum", FRAME_SIZE)
            return None
        return hex_read(id_bytes)
