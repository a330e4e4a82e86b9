"""The parser contract: `feed(bytes) -> list[Read]`, own buffer, corrupt input counted by reason."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import Counter
from typing import ClassVar

import structlog

from agent.vocabulary.tags import Read

log = structlog.get_logger(__name__)

_TERMINATOR = re.compile(rb"[\r\n]")


class FrameParser(ABC):
    """A sans-I/O parser for one reader family; `errors` counts rejected input by reason."""

    protocol: ClassVar[str]

    def __init__(self, source: str = "") -> None:
        self.source = source
        self.errors: Counter[str] = Counter()
        self._buffer = bytearray()

    @abstractmethod
    def feed(self, data: bytes) -> list[Read]:
        """Add `data`; return the reads of every frame it completed, in order."""

    def reset(self) -> None:
        """Forget a partial frame (the connection was lost; its rest never comes)."""
        self._buffer.clear()

    def _reject(self, reason: str, size: int) -> None:
        self.errors[reason] += 1
        # Warn on the first of each reason only: a noisy line must not flood the log. Never
        # the bytes themselves: a patient's wristband may be read by the same reader.
        emit = log.warning if self.errors[reason] == 1 else log.debug
        emit(
            "rfid.frame_rejected",
            source=self.source,
            protocol=self.protocol,
            reason=reason,
            size=size,
            count=self.errors[reason],
        )


class LineParser(FrameParser):
    """Base for CR/LF-terminated text protocols: lines over `max_line` bytes are rejected whole."""

    def __init__(self, source: str = "", max_line: int = 256) -> None:
        super().__init__(source)
        self.max_line = max_line
        self._discarding = False  # inside an over-long line: drop up to its terminator

    def reset(self) -> None:
        """Forget a partial line."""
        super().reset()
        self._discarding = False

    def feed(self, data: bytes) -> list[Read]:
        """Add `data`; return the reads of every complete line."""
        self._buffer += data
        reads: list[Read] = []
        while True:
            match = _TERMINATOR.search(self._buffer)
            if match is None:
                if len(self._buffer) > self.max_line:
                    if not self._discarding:
                        self._reject("line_too_long", len(self._buffer))
                    self._discarding = True
                    self._buffer.clear()
                return reads
            line = bytes(self._buffer[: match.start()])
            del self._buffer[: match.end()]
            if self._discarding:
                self._discarding = False
                continue
            if len(line) > self.max_line:
                self._reject("line_too_long", len(line))
                continue
            text = line.decode("ascii", errors="replace").strip()
            if text:
                read = self._parse_line(text, len(line))
                if read is not None:
                    reads.append(read)

    @abstractmethod
    def _parse_line(self, text: str, size: int) -> Read | None:
        """Return the read of one non-empty line, or reject it and return None."""
