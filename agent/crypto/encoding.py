"""Text ⇄ bytes for the platforms: Base64 (standard and Java MIME), hex, JavaScript encodeURI."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Literal

from agent.errors import CryptoError

TextOut = Literal["base64", "mime", "hex", "HEX"]
"""How ciphertext is written: Base64 on one line, Java MIME Base64, lower or upper hex."""

MIME_LINE = 76
# JavaScript encodeURI leaves these (besides ASCII letters and digits) as they are.
URI_KEPT = frozenset(b";,/?:@&=+$-_.!~*'()#")
_WHITESPACE = re.compile(r"\s+")


def to_bytes(value: str | bytes, source: str = "plaintext") -> bytes:
    """`value` itself if bytes, else its UTF-8 encoding; CryptoError naming `source` if none."""
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as err:  # a lone surrogate
        raise CryptoError(source, "text with a lone surrogate has no UTF-8 form") from err


def to_text(data: bytes, source: str) -> str:
    """`data` decoded as UTF-8; CryptoError naming `source` if it is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CryptoError(source, "decrypted bytes are not UTF-8 text") from err


def b64encode(data: bytes, *, mime: bool = False) -> str:
    """Standard Base64; `mime` wraps at 76 columns with CRLF as Java's MIME encoder does."""
    text = base64.b64encode(data).decode("ascii")
    if not mime:
        return text
    return "\r\n".join(text[i : i + MIME_LINE] for i in range(0, len(text), MIME_LINE))


def b64decode(text: str | bytes, source: str) -> bytes:
    """Bytes of standard Base64, line breaks and spaces (MIME, sun.misc) ignored."""
    raw = text.decode("ascii", "replace") if isinstance(text, bytes) else text
    try:
        return base64.b64decode(_WHITESPACE.sub("", raw), validate=True)
    except (binascii.Error, ValueError) as err:
        raise CryptoError(source, "not Base64") from err


def hexdecode(text: str, source: str) -> bytes:
    """Bytes of hex text in either case, spaces ignored."""
    try:
        return bytes.fromhex(_WHITESPACE.sub("", text))
    except ValueError as err:
        raise CryptoError(source, "not hex") from err


def encode(data: bytes, output: TextOut) -> str:
    """`data` written as `output` says."""
    if output == "hex":
        return data.hex()
    if output == "HEX":
        return data.hex().upper()
    return b64encode(data, mime=output == "mime")


def decode(text: str, output: TextOut, source: str) -> bytes:
    """The inverse of `encode`; hex of either case and any Base64 line layout are accepted."""
    if output in ("hex", "HEX"):
        return hexdecode(text, source)
    return b64decode(text, source)


def encode_uri(text: str) -> str:
    """JavaScript `encodeURI(text)`: UTF-8 percent-escapes, upper-case hex, URI syntax kept."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as err:  # a lone surrogate: JavaScript throws URIError too
        raise CryptoError("text", "a lone surrogate cannot be encoded") from err
    return "".join(
        chr(b) if chr(b).isascii() and (chr(b).isalnum() or b in URI_KEPT) else f"%{b:02X}"
        for b in data
    )


def encode_uri_dollar(text: str) -> str:
    """Seed 004's variant: `encodeURI(text)` with every `%` replaced by `$`."""
    return encode_uri(text).replace("%", "$")
