"""Sans-I/O receipt boundaries on a printer line: ESC/POS cut, an end-marker line, or oversize."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.washer.escpos import Kind, scan


@dataclass(frozen=True, slots=True)
class Chunk:
    """The raw bytes of one receipt; `oversize` if it was cut off at max_bytes (or follows one)."""

    data: bytes
    oversize: bool = False


class ReceiptAssembler:
    """Accumulates printer bytes; `feed` returns finished receipts, `flush` the pending one."""

    def __init__(self, max_bytes: int, end_marker: bytes | None = None) -> None:
        self.max_bytes = max_bytes
        self.end_marker = end_marker
        self._buffer = bytearray()
        self._pos = 0  # bytes before this are scanned
        self._line = bytearray()  # text of the current line, for the end marker
        self._oversize = False  # the data belongs to a receipt already over max_bytes

    @property
    def pending(self) -> bool:
        """True while bytes of an unfinished receipt are held."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[Chunk]:
        """Add `data`; return every receipt it completed, in order."""
        self._buffer += data
        chunks: list[Chunk] = []
        while self._pos < len(self._buffer):
            start = self._pos
            token = scan(self._buffer, start)
            if token is None:
                break
            self._pos = token.end
            if token.kind is Kind.CUT:
                chunks.append(self._take(token.end))
            elif token.kind is Kind.TEXT and self.end_marker is not None:
                end = self._marker_end(token.text)
                if end is not None:
                    chunks.append(self._take(start + end))
        if len(self._buffer) > self.max_bytes:
            chunks.append(self._take(len(self._buffer)))
            self._oversize = True  # the rest of this receipt, up to its boundary, is oversize too
            chunks[-1] = Chunk(chunks[-1].data, oversize=True)
        return chunks

    def flush(self) -> Chunk | None:
        """End the pending receipt (idle gap, shutdown); None if nothing is held."""
        if not self._buffer:
            return None
        chunk = self._take(len(self._buffer))
        self._oversize = False
        return chunk

    def _marker_end(self, text: bytes) -> int | None:
        """Offset just past the LF of a line holding the end marker, if `text` completes one."""
        assert self.end_marker is not None
        offset = 0
        while (newline := text.find(b"\n", offset)) >= 0:
            self._line += text[offset:newline]
            if self.end_marker in self._line:
                return newline + 1
            self._line.clear()
            offset = newline + 1
        self._line += text[offset:]
        if len(self._line) > self.max_bytes:
            self._line.clear()
        return None

    def _take(self, end: int) -> Chunk:
        chunk = Chunk(bytes(self._buffer[:end]), oversize=self._oversize)
        del self._buffer[:end]
        self._pos = 0
        self._line.clear()
        self._oversize = False
        return chunk
