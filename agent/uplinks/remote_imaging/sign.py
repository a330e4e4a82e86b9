"""The getToken `sign`: Base64 of RSA(public key, "appId,orgId,license"), and its inverse."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

from Crypto.Cipher import PKCS1_OAEP, PKCS1_v1_5
from Crypto.PublicKey import RSA

from agent.uplinks.remote_imaging.fields import DATETIME

Padding = Literal["pkcs1v15", "oaep"]  # Java RSA/ECB/PKCS1Padding | OAEPWithSHA-1AndMGF1Padding
SignField = Literal["appId", "orgId", "license", "time"]
DEFAULT_FIELDS: tuple[SignField, ...] = ("appId", "orgId", "license")


class BadKeyError(ValueError):
    """A key that RSA cannot load."""


def load_key(text: str) -> RSA.RsaKey:
    """An RSA key from PEM, or from bare Base64 DER as Java platforms often hand it out."""
    text = text.strip()
    try:
        if "-----BEGIN" in text:
            return RSA.import_key(text)
        return RSA.import_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, IndexError, TypeError, binascii.Error) as err:
        raise BadKeyError("not an RSA key (PEM, or Base64 of its DER encoding)") from err


def max_plaintext(key: RSA.RsaKey, padding: Padding) -> int:
    """The longest UTF-8 message this key and padding can encrypt in one block."""
    size = key.size_in_bytes()
    return size - 11 if padding == "pkcs1v15" else size - 2 * 20 - 2  # OAEP with SHA-1


def plaintext(
    fields: Sequence[SignField], values: Mapping[str, str], now: datetime, separator: str = ","
) -> str:
    """The fields joined in order; `time` is `now` as YYYY-MM-DD HH24:MI:SS."""
    return separator.join(now.strftime(DATETIME) if f == "time" else values[f] for f in fields)


def encrypt(key: RSA.RsaKey, text: str, padding: Padding = "pkcs1v15") -> str:
    """Base64 (standard alphabet, no line breaks) of the RSA ciphertext of `text` (UTF-8)."""
    cipher = PKCS1_v1_5.new(key) if padding == "pkcs1v15" else PKCS1_OAEP.new(key)
    return base64.b64encode(cipher.encrypt(text.encode("utf-8"))).decode("ascii")


def decrypt(key: RSA.RsaKey, sign: str, padding: Padding = "pkcs1v15") -> str | None:
    """The text inside `sign` (the platform's side, used by the simulator); None if it fails."""
    try:
        data = base64.b64decode(sign, validate=True)
        if padding == "oaep":
            return PKCS1_OAEP.new(key).decrypt(data).decode("utf-8")
        clear = PKCS1_v1_5.new(key).decrypt(data, b"")  # b"" on failure: never a real sign
        return clear.decode("utf-8") if clear else None
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        return None
