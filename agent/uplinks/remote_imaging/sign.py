"""The getToken `sign`: Base64 of RSA(public key, "appId,orgId,license"), and its inverse."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

from Crypto.PublicKey import RSA

from agent.crypto import rsa
from agent.errors import CryptoError
from agent.uplinks.remote_imaging.fields import DATETIME

Padding = rsa.Padding
SignField = Literal["appId", "orgId", "license", "time"]
DEFAULT_FIELDS: tuple[SignField, ...] = ("appId", "orgId", "license")


class BadKeyError(ValueError):
    """A key that RSA cannot load."""


def load_key(text: str) -> RSA.RsaKey:
    """An RSA key from PEM, bare Base64 DER as Java platforms often hand it out, or .NET XML."""
    try:
        return rsa.load_key(text, "public_key")
    except CryptoError as err:
        raise BadKeyError(err.reason) from err


def max_plaintext(key: RSA.RsaKey, padding: Padding) -> int:
    """The longest UTF-8 message this key and padding can encrypt in one block."""
    return rsa.block_size(key, padding)


def plaintext(
    fields: Sequence[SignField], values: Mapping[str, str], now: datetime, separator: str = ","
) -> str:
    """The fields joined in order; `time` is `now` as YYYY-MM-DD HH24:MI:SS."""
    return separator.join(now.strftime(DATETIME) if f == "time" else values[f] for f in fields)


def encrypt(key: RSA.RsaKey, text: str, padding: Padding = "pkcs1v15") -> str:
    """Base64 (standard alphabet, no line breaks) of the RSA ciphertext of `text` (UTF-8)."""
    return rsa.encrypt_text(key, text, padding=padding)


def decrypt(key: RSA.RsaKey, sign: str, padding: Padding = "pkcs1v15") -> str | None:
    """The text inside `sign` (the platform's side, used by the simulator); None if it fails."""
    try:
        return rsa.decrypt_text(key, sign, padding=padding, source="sign")
    except CryptoError:
        return None
