"""Keyboard-wedge / serial decimal readers: one number per CR/LF-terminated line.

Accepted lines: 10 decimal digits (the low 32 bits of the tag) or the Wiegand-26 form
`FFF,CCCCC` (facility 0–255, card 0–65535; 24 bits).
"""

from __future__ import annotations

from agent.vocabulary.tags import (
    Read,
    decimal_read,
    parse_decimal10,
    parse_wiegand26,
    wiegand26_read,
)
from drivers.rfid.framing import LineParser


class DecimalLineParser(LineParser):
    """Parses 10-digit decimal and `FFF,CCCCC` lines."""

    protocol = "decimal"

    def _parse_line(self, text: str, size: int) -> Read | None:
        try:
            number = parse_decimal10(text)
            if number is not None:
                return decimal_read(number, raw=text)
            wiegand = parse_wiegand26(text)
            if wiegand is not None:
                return wiegand26_read(*wiegand, raw=text)
        except ValueError:
            self._reject("out_of_range", size)
            return None
        self._reject("bad_line", size)
        return None
