"""MD5, SHA-1, SHA-256 and SM3 digests and HMACs, as bytes or lower/upper hex."""

from __future__ import annotations

import hashlib
import hmac as std_hmac
from typing import Literal

from agent.crypto.encoding import to_bytes

Algorithm = Literal["md5", "sha1", "sha256", "sm3"]
_BLOCK = 64  # bytes per block of every algorithm above (HMAC needs it)


def _sm3_in_hashlib() -> bool:
    try:
        hashlib.new("sm3")
    except ValueError:  # OpenSSL built without SM3
        return False
    return True


_HASHLIB_SM3 = _sm3_in_hashlib()


def digest(algorithm: Algorithm, data: str | bytes) -> bytes:
    """The digest of `data` (text as UTF-8)."""
    raw = to_bytes(data, "data")
    if algorithm == "sm3" and not _HASHLIB_SM3:
        from gmssl import sm3

        return bytes.fromhex(sm3.sm3_hash(list(raw)))
    return hashlib.new(algorithm, raw, usedforsecurity=False).digest()


def hexdigest(algorithm: Algorithm, data: str | bytes, *, upper: bool = False) -> str:
    """The digest of `data` as hex, lower case unless `upper`."""
    text = digest(algorithm, data).hex()
    return text.upper() if upper else text


def hmac(algorithm: Algorithm, key: str | bytes, data: str | bytes) -> bytes:
    """HMAC (RFC 2104) of `data` under `key` (texts as UTF-8)."""
    raw_key, raw = to_bytes(key, "key"), to_bytes(data, "data")
    if algorithm != "sm3" or _HASHLIB_SM3:
        return std_hmac.new(raw_key, raw, algorithm).digest()
    if len(raw_key) > _BLOCK:
        raw_key = digest(algorithm, raw_key)
    raw_key = raw_key.ljust(_BLOCK, b"\0")
    inner = digest(algorithm, bytes(b ^ 0x36 for b in raw_key) + raw)
    return digest(algorithm, bytes(b ^ 0x5C for b in raw_key) + inner)


def hmac_hex(
    algorithm: Algorithm, key: str | bytes, data: str | bytes, *, upper: bool = False
) -> str:
    """HMAC of `data` under `key` as hex, lower case unless `upper`."""
    text = hmac(algorithm, key, data).hex()
    return text.upper() if upper else text
