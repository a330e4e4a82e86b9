"""Tag identity: what a reader delivered, its canonical form, and matching configured tags.

Canonical form. A read carries the ID bits the reader delivered; its canonical tag is those
bits as uppercase hex, in the reader's configured byte order (`as-read`, or `reversed` for
readers that send the ID least significant byte first). The raw form (hex of the ID bytes as
sent, or the line text for line protocols) is kept beside it. A code that is not an even
number of hex digits (a barcode, a wristband number with letters) is a *text* code: kept
verbatim, no bits, never reordered.

Configured tags (`parse_configured_tag`) are what a nurse types from the card or the label:

* `FFF,CCCCC` — Wiegand-26 as printed: facility 0–255, card 0–65535 → 24 bits;
* exactly 10 decimal digits — the printed decimal number = the low 32 bits of the tag;
* hex, optionally `0x`-prefixed or split by `:`, `-` or spaces (`0x` forces hex for a code
  that would otherwise read as 10 decimal digits);
* anything else is a text code, compared verbatim.

Matching (`tag_matches`). Equal text (hex compared case-insensitively) always matches.
Otherwise both sides must carry bits, and they match when the bits both forms share — the low
min(bits) bits — are equal, with at least 24 shared bits (a Wiegand-26 number) so that a short
code never matches by accident. So the printed `0013961168` and `213,02000` both match the
RDM6300 read `0100D507D0` (40 bits: version byte 01, then 00D507D0). `TagIndex` applies the
same rule to a whole configured list (scopes, badges) and refuses two entries that would both
match one read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

ByteOrder = Literal["as-read", "reversed"]
T = TypeVar("T")

MIN_SHARED_BITS = 24
_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")
_DECIMAL10 = re.compile(r"^\d{10}$")
_WIEGAND26 = re.compile(r"^(\d{1,3}),(\d{1,5})$")
_HEX_SEPARATORS = re.compile(r"[:\-\s]")


@dataclass(frozen=True, slots=True)
class Read:
    """One tag as a reader delivered it: `id_hex` (None for a text code), `bits`, `raw`."""

    id_hex: str | None
    bits: int
    raw: str

    def canonical(self, byte_order: ByteOrder = "as-read") -> str:
        """Return the canonical tag: uppercase hex in `byte_order`, or the text code verbatim."""
        if self.id_hex is None:
            return self.raw
        if byte_order == "reversed":
            return bytes.fromhex(self.id_hex)[::-1].hex().upper()
        return self.id_hex


def hex_read(data: bytes, raw: str | None = None) -> Read:
    """Make the read of binary ID bytes; `raw` defaults to their hex."""
    text = data.hex().upper()
    return Read(text, 8 * len(data), raw if raw is not None else text)


def code_read(code: str) -> Read:
    """Make the read of a text code: even-length hex carries bits, anything else is text."""
    if _HEX.match(code):
        return Read(code.upper(), 4 * len(code), code)
    return Read(None, 0, code)


def decimal_read(number: int, raw: str) -> Read:
    """Make the read of a 10-digit decimal number (the low 32 bits of the tag)."""
    return Read(f"{number:08X}", 32, raw)


def wiegand26_read(facility: int, card: int, raw: str) -> Read:
    """Make the read of a Wiegand-26 `FFF,CCCCC` number (24 bits: facility, then card)."""
    return Read(f"{facility:02X}{card:04X}", 24, raw)


def parse_wiegand26(text: str) -> tuple[int, int] | None:
    """Return (facility, card) of `FFF,CCCCC`, None if not that form; ValueError if out of range."""
    match = _WIEGAND26.match(text)
    if match is None:
        return None
    facility, card = int(match[1]), int(match[2])
    if facility > 0xFF or card > 0xFFFF:
        raise ValueError("Wiegand-26 needs facility 0-255 and card 0-65535")
    return facility, card


def parse_decimal10(text: str) -> int | None:
    """Return the value of 10 decimal digits, None if not that form; ValueError if > 32 bits."""
    if not _DECIMAL10.match(text):
        return None
    number = int(text)
    if number > 0xFFFFFFFF:
        raise ValueError("a 10-digit card number must be at most 4294967295 (32 bits)")
    return number


def parse_configured_tag(text: str) -> Read:
    """Parse a tag as typed into the config (hex, 10-digit decimal, `FFF,CCCCC`, or text)."""
    code = text.strip()
    if not code:
        raise ValueError("a tag must not be empty")
    wiegand = parse_wiegand26(code)
    if wiegand is not None:
        return wiegand26_read(*wiegand, raw=code)
    number = parse_decimal10(code)
    if number is not None:
        return decimal_read(number, raw=code)
    compact = _HEX_SEPARATORS.sub("", code)
    if compact[:2].lower() == "0x":
        compact = compact[2:]
        if len(compact) % 2:
            compact = "0" + compact
        if not _HEX.match(compact):
            raise ValueError(f"{code!r} is not hex")
    if _HEX.match(compact):
        return Read(compact.upper(), 4 * len(compact), code)
    return Read(None, 0, code)


def tag_matches(configured: Read, tag: str, bits: int) -> bool:
    """True if a read's canonical `tag` (with `bits`, 0 for text) is the `configured` tag."""
    if configured.raw == tag or configured.id_hex == tag.upper():
        return True
    if configured.id_hex is None or bits == 0:
        return False
    if configured.raw.upper() == tag.upper():  # a decimal-looking barcode read as hex digits
        return True
    shared = min(configured.bits, bits)
    if shared < MIN_SHARED_BITS:
        return False
    mask = (1 << shared) - 1
    return int(configured.id_hex, 16) & mask == int(tag, 16) & mask


def mask_tag(tag: str) -> str:
    """Return `tag` with all but its last 4 characters hidden (2 for short codes), for logs."""
    keep = 4 if len(tag) > 8 else 2
    return "*" * max(len(tag) - keep, 0) + tag[-keep:]


@dataclass(slots=True)
class TagIndex(Generic[T]):
    """Configured tags → values, found by the `tag_matches` rule; ambiguous entries refused."""

    _by_text: dict[str, list[tuple[Read, T]]] = field(default_factory=dict)
    _by_low24: dict[int, list[tuple[Read, T]]] = field(default_factory=dict)

    def add(self, text: str, value: T) -> None:
        """Add a configured tag; ValueError if it is invalid or overlaps one already added."""
        configured = parse_configured_tag(text)
        probe = configured.id_hex or configured.raw
        clash = self._find(probe, configured.bits)
        if clash is not None:
            raise ValueError(f"tag {text!r} matches the same reads as {clash[0].raw!r}")
        for key in {configured.raw, probe}:
            self._by_text.setdefault(key, []).append((configured, value))
        if configured.id_hex is not None and configured.bits >= MIN_SHARED_BITS:
            low24 = int(configured.id_hex, 16) & 0xFFFFFF
            self._by_low24.setdefault(low24, []).append((configured, value))

    def get(self, tag: str, bits: int) -> T | None:
        """Return the value of the configured tag matching a read's canonical `tag`, or None."""
        found = self._find(tag, bits)
        return found[1] if found is not None else None

    def _find(self, tag: str, bits: int) -> tuple[Read, T] | None:
        candidates = list(self._by_text.get(tag, ()))
        if bits:
            candidates += self._by_text.get(tag.upper(), [])
        if bits >= MIN_SHARED_BITS:
            candidates += self._by_low24.get(int(tag, 16) & 0xFFFFFF, [])
        for configured, value in candidates:
            if tag_matches(configured, tag, bits):
                return configured, value
        return None
